package http

import (
	"errors"
	"io"
	"sync"
)

// bufPool recycles request body buffers. Buffers grown past maxKeep (by an
// oversized record) are left to the garbage collector.
type bufPool struct {
	pool    sync.Pool // *[]byte
	maxKeep int
}

func (p *bufPool) get() *[]byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 64<<10)
	return &b
}

func (p *bufPool) put(b *[]byte) {
	if cap(*b) > p.maxKeep {
		return
	}
	*b = (*b)[:0]
	p.pool.Put(b)
}

// errBodyDetached is seen by a transport that reads a request body after the
// round trip it belongs to returned.
var errBodyDetached = errors.New("http: request body read after its request finished")

// bodyLease lends a pooled buffer to the transport as request bodies.
//
// net/http may read or close a request body from its own goroutine after
// RoundTrip returned (see the RoundTripper docs), so a pooled buffer cannot be
// reused as soon as Do returns. Readers of a lease take its lock for every
// Read; detach takes it once and stops every later Read, after which the
// buffer is the caller's again. GetBody hands out more readers of the same
// lease.
type bodyLease struct {
	mu       sync.Mutex
	buf      []byte
	detached bool
}

func (l *bodyLease) reader() io.ReadCloser { return &leaseReader{lease: l} }

func (l *bodyLease) detach() {
	l.mu.Lock()
	l.detached = true
	l.buf = nil
	l.mu.Unlock()
}

type leaseReader struct {
	lease *bodyLease
	off   int
}

// maxRead bounds the copy done under the lease's lock. (No WriteTo: the
// transport wraps bodies in an io.LimitedReader, which would hide it, and a
// network write under the lock could make detach wait on the peer.)
const maxRead = 64 << 10

func (r *leaseReader) Read(p []byte) (int, error) {
	l := r.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.detached {
		return 0, errBodyDetached
	}
	if r.off >= len(l.buf) {
		return 0, io.EOF
	}
	if len(p) > maxRead {
		p = p[:maxRead]
	}
	n := copy(p, l.buf[r.off:])
	r.off += n
	return n, nil
}

func (r *leaseReader) Close() error { return nil }
