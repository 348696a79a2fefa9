// Package testport hands tests TCP ports on 127.0.0.1 that nothing else on
// the machine will take while the test process lives.
//
// A port found by listening on port 0 and closing the listener is in the
// kernel's ephemeral range (32768–60999 by default): between the close and
// the moment the agent under test binds it, any outgoing connection on the
// machine may take it as its local port, and a client that keeps dialling a
// stopped server on such a port may even connect to itself. Ports from here
// lie below the ephemeral range, and each is held by a lock file for the
// life of the process so that parallel test binaries never hand out the same
// one.
package testport

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

const (
	lo = 20000
	hi = 32000 // below the default ephemeral range
)

var (
	mu   sync.Mutex
	next = lo + (os.Getpid()*97)%(hi-lo)
	held []*os.File // lock files kept open: their locks last as long as the process
)

// Addr returns "127.0.0.1:PORT" for a port that is free now and that no
// other caller of this package, in this process or another, will be given.
func Addr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(Port(t))
}

// Port is Addr's port number.
func Port(t testing.TB) int {
	t.Helper()
	p, err := reserve()
	if err != nil {
		t.Fatalf("testport: %v", err)
	}
	return p
}

// Listen listens on a port from Addr.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", Addr(t))
		if err == nil {
			return ln
		}
	}
	t.Fatal("testport: no port could be listened on after 20 tries")
	return nil
}

func reserve() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	dir := filepath.Join(os.TempDir(), "kplagent-testports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return 0, err
	}
	for range hi - lo {
		p := next
		next++
		if next >= hi {
			next = lo
		}
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close() // another test process holds it
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			f.Close() // something on the machine uses it
			continue
		}
		ln.Close()
		held = append(held, f)
		return p, nil
	}
	return 0, fmt.Errorf("no free port in %d–%d", lo, hi-1)
}
