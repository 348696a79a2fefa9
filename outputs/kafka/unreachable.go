package kafka

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kplagent/agent/outputs/internal/tlsconf"
)

// connWatch remembers the last failed connection to a broker (a name that
// does not resolve, nothing listening, TLS or SASL refused) until a
// connection succeeds. franz-go retries connections inside a Send, which
// only times out: without this, a Send that never reached a broker says
// "records have timed out" and agent status shows no cause.
type connWatch struct {
	last atomic.Pointer[connFailure]
}

type connFailure struct {
	addr string
	err  error
}

var _ kgo.HookBrokerConnect = (*connWatch)(nil)

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (w *connWatch) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil {
		w.last.Store(nil)
		return
	}
	w.last.Store(&connFailure{addr: net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port))), err: err})
}

// failing returns the last connection failure if no connection succeeded
// after it. It may predate the Send: the producer dials with backoff, and
// fails records with what it saw last without dialing again.
func (w *connWatch) failing() *connFailure {
	return w.last.Load()
}

// unreachableError is a Send's error when no broker could be connected to
// during it: the connection's failure comes first (agent status shows the
// start of an error), the Send's own error is wrapped.
type unreachableError struct {
	f   *connFailure
	err error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("%s (%v)", e.f, e.err)
}

// String says which broker could not be connected to, and why.
func (f *connFailure) String() string {
	// franz-go's "unable to dial: " says what the net error says next.
	cause := strings.TrimPrefix(f.err.Error(), "unable to dial: ")
	return fmt.Sprintf("kafka: broker %s unreachable: %s%s", f.addr, cause, tlsconf.Hint(f.err))
}

// WaitCause implements outputs.WaitCauser: the last failed connection to a
// broker, if none succeeded since. A Send waiting for a broker that is down
// says why only at its deadline; the agent's stall warning says it sooner.
func (o *Output) WaitCause() error {
	if f := o.conns.failing(); f != nil {
		return errors.New(f.String())
	}
	return nil
}

func (e *unreachableError) Unwrap() error { return e.err }
