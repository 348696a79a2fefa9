package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kplagent/agent/internal/testport"
)

// sink is a real HTTP server that receives ndjson lines of the form
// "L<number> ..." and counts every line number, so tests can assert that
// every line arrived and count duplicates. It can be scripted to fail
// requests and can be stopped and restarted on the same address.
type sink struct {
	t    *testing.T
	addr string

	mu     sync.Mutex
	counts map[int]int
	bad    int // lines that were not "L<number> ..."

	requests atomic.Int64
	conns    atomic.Int64 // TCP connections accepted
	// respond, when set, may answer a request instead of accepting it.
	respond atomic.Pointer[func(n int64, w http.ResponseWriter) bool]

	srvMu sync.Mutex
	srv   *http.Server
	done  chan struct{}
}

func newSink(t *testing.T) *sink {
	t.Helper()
	s := &sink{t: t, counts: map[int]int{}}
	// A port below the ephemeral range: a stopped sink's port cannot be
	// taken by an outgoing connection before start listens again.
	ln := testport.Listen(t)
	s.addr = ln.Addr().String()
	s.serve(ln)
	t.Cleanup(s.stop)
	return s
}

func (s *sink) URL() string { return "http://" + s.addr + "/ingest" }

func (s *sink) serve(ln net.Listener) {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	srv := &http.Server{Handler: http.HandlerFunc(s.handle), ReadHeaderTimeout: 5 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.t.Errorf("sink: %v", err)
		}
	}()
	s.srv, s.done = srv, done
}

// stop closes the listener and every connection: the destination is down.
func (s *sink) stop() {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	if s.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	_ = s.srv.Close()
	<-s.done
	s.srv = nil
}

// start listens again on the same address.
func (s *sink) start() {
	var ln net.Listener
	var err error
	for i := 0; i < 100; i++ {
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("sink: listen again on %s: %v", s.addr, err)
	}
	s.serve(ln)
}

func (s *sink) handle(w http.ResponseWriter, r *http.Request) {
	n := s.requests.Add(1)
	if f := s.respond.Load(); f != nil && (*f)(n, w) {
		_, _ = io.Copy(io.Discard, r.Body)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	nums := make([]int, 0, 1024)
	bad := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		num, ok := lineNumber(line)
		if !ok {
			bad++
			continue
		}
		nums = append(nums, num)
	}
	s.mu.Lock()
	for _, num := range nums {
		s.counts[num]++
	}
	s.bad += bad
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func lineNumber(line []byte) (int, bool) {
	// agent tail --to http sends JSON objects ({"message":"L12 ..."}).
	line = bytes.TrimPrefix(line, []byte(`{"message":"`))
	if len(line) < 2 || line[0] != 'L' {
		return 0, false
	}
	end := bytes.IndexByte(line, ' ')
	if end < 0 {
		end = len(line)
	}
	n, err := strconv.Atoi(string(line[1:end]))
	return n, err == nil
}

// check reports missing line numbers in [0, n) and the number of duplicates.
func (s *sink) check(n int) (missing []int, dups int, bad int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < n; i++ {
		c := s.counts[i]
		if c == 0 {
			missing = append(missing, i)
		} else {
			dups += c - 1
		}
	}
	for k := range s.counts {
		if k < 0 || k >= n {
			bad++
		}
	}
	return missing, dups, bad + s.bad
}

func (s *sink) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.counts)
}

// numberedLine formats line i with padding to about size bytes.
func numberedLine(buf []byte, i, size int) []byte {
	buf = fmt.Appendf(buf, "L%08d ", i)
	for len(buf) < size-1 {
		buf = append(buf, "GET /api/v1/orders?id=42 HTTP/1.1 200 512 \"-\" \"curl/8.5.0\" "[len(buf)%40])
	}
	return append(buf, '\n')
}

// count is how many times line i arrived.
func (s *sink) count(i int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[i]
}
