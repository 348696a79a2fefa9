package kafka

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kplagent/agent/outputs/internal/tlsconf"
)

// connWatch remembers the last failed connection to a broker (a name that
// does not resolve, nothing listening, TLS or SASL refused, the latter said
// as such) until a
// connection succeeds. franz-go retries connections inside a Send, which
// only times out: without this, a Send that never reached a broker says
// "records have timed out" and agent status shows no cause.
type connWatch struct {
	last atomic.Pointer[connFailure]
	// sasl names the SASL mechanism and user ("SCRAM-SHA-256 as user
	// agent"), "" without SASL. Set before the client starts.
	sasl string
	// saslSent holds the brokers (host:port) whose connection being set up
	// has sent a SASL request: a failure of that setup is the broker
	// refusing the credentials (many brokers close the connection, and
	// the client sees only EOF).
	saslSent sync.Map
}

type connFailure struct {
	addr string
	err  error
	sasl string // set when the broker refused the SASL authentication
}

var (
	_ kgo.HookBrokerConnect = (*connWatch)(nil)
	_ kgo.HookBrokerWrite   = (*connWatch)(nil)
)

// SASL request keys (SaslHandshake, SaslAuthenticate).
const (
	keySASLHandshake    = 17
	keySASLAuthenticate = 36
)

// OnBrokerConnect implements kgo.HookBrokerConnect. It is called once a
// connection is set up (ApiVersions and SASL included) or has failed.
func (w *connWatch) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	addr := net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port)))
	_, saslSent := w.saslSent.LoadAndDelete(addr)
	if err == nil {
		w.last.Store(nil)
		return
	}
	f := &connFailure{addr: addr, err: err}
	if w.sasl != "" && (saslSent || errors.Is(err, kerr.SaslAuthenticationFailed)) {
		f.sasl = w.sasl
	}
	w.last.Store(f)
}

// OnBrokerWrite implements kgo.HookBrokerWrite: it notes the SASL
// requests written.
func (w *connWatch) OnBrokerWrite(meta kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if w.sasl != "" && err == nil && (key == keySASLHandshake || key == keySASLAuthenticate) {
		w.saslSent.Store(net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port))), true)
	}
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
	if f.sasl != "" {
		return fmt.Sprintf("kafka: broker %s refused the SASL authentication (%s): %s; check sasl.mechanism, sasl.username and sasl.password",
			f.addr, f.sasl, cause)
	}
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
