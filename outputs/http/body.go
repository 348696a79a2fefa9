package http

import (
	"bytes"
	"errors"
	"io"
	"sync"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs/internal/encode"
)

// bufPool recycles request body buffers. Buffers grown past maxKeep (by an
// oversized record) are left to the garbage collector.
//
// A few buffers are kept in a free list that survives garbage collections
// (a sync.Pool is emptied by every other one, and a request body grown again
// from 64 KiB to a few MiB costs a copy per doubling): about one per Send in
// flight. More are pooled.
type bufPool struct {
	free    chan *[]byte
	pool    sync.Pool // *[]byte
	maxKeep int
}

// keptBufs is the size of the free list: the default sender concurrency.
const keptBufs = 4

func (p *bufPool) get() *[]byte {
	select {
	case b := <-p.free:
		return b
	default:
	}
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
	if p.free == nil {
		p.pool.Put(b)
		return
	}
	select {
	case p.free <- b:
	default:
		p.pool.Put(b)
	}
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

// addAggregate adds the user records of Kinesis record i of the batch to
// the request being built (sending it first when they do not fit). An
// aggregate whose body already is its ndjson lines (encode.LinesShaped) is
// appended in one copy; the others record by record.
func (s *sender) addAggregate(i int) error {
	a := &s.recs[i]
	if s.o.format == formatNDJSON && encode.LinesShaped(s.o.enc, a) {
		if !s.fits(a) && s.n > 0 {
			if err := s.flush(); err != nil {
				return err
			}
		}
		if s.fits(a) && s.appendLines(i, a) {
			return nil
		}
	}
	s.objects = a.JSONObjects
	idx := 0
	return aggregate.ForEach(a, func(pk, _, data []byte) error {
		err := s.add(userRef{rec: i, idx: idx}, pk, data)
		idx++
		return err
	})
}

// fits reports whether a's lines fit the request being built.
func (s *sender) fits(a *aggregate.Aggregate) bool {
	return s.n+a.Count <= s.o.cfg.MaxRequestRecords && len(s.body)+len(a.Body) <= s.o.requestLimit()
}

// appendLines appends a's body, the user records of Kinesis record i each
// followed by "\n", to the request (ndjson has no prefix, separator nor
// suffix), with their ends and places. When the body does not hold a.Count
// lines it takes them back and reports false (ForEach refuses such a body).
func (s *sender) appendLines(i int, a *aggregate.Aggregate) bool {
	base, n := len(s.body), s.n
	lines := a.Body
	s.body = append(s.body, lines...)
	for off, idx := 0, 0; off < len(lines); idx++ {
		off += bytes.IndexByte(lines[off:], '\n') + 1
		s.ends = append(s.ends, base+off)
		s.refs = append(s.refs, userRef{rec: i, idx: idx})
		s.n++
	}
	if a.Count > 0 && s.n-n != a.Count {
		s.body, s.ends, s.refs, s.n = s.body[:base], s.ends[:n], s.refs[:n], n
		return false
	}
	return true
}
