package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// lineToken occurs exactly once in every line ensureLog writes (the request
// line's protocol), and in no other part of a line: the sink counts user
// records by counting it, whatever the framing of the body (ndjson, a JSON
// array of strings or objects, raw KPL aggregates, the floor's chunks).
var lineToken = []byte("HTTP/1.1")

// sink is the cheap counting HTTP sink every row of `make bench-e2e` posts
// to: it reads each body into a pooled buffer and counts lineToken. It shares
// the two cores with what it measures, so it must cost little and the same
// for every row: numbers taken with another sink are not comparable.
type sink struct {
	srv      *http.Server
	url      string
	pool     sync.Pool // *[]byte
	records  atomic.Int64
	bytesIn  atomic.Int64
	requests atomic.Int64
}

func startSink() (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sink{url: "http://" + ln.Addr().String() + "/ingest"}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve)}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *sink) close() { s.srv.Close() }

func (s *sink) reset() {
	s.records.Store(0)
	s.bytesIn.Store(0)
	s.requests.Store(0)
}

func (s *sink) serve(w http.ResponseWriter, r *http.Request) {
	bp, _ := s.pool.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, 2<<20)
		bp = &b
	}
	b, err := readAll((*bp)[:0], r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.Header.Get("Content-Encoding") != "" {
		// Only when asked (-args --compression gzip|zstd): decompressing
		// and decoding (countRecords) costs the sink, so such rows are not
		// comparable with the uncompressed ones.
		n, err := countRecords(r, b)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.records.Add(n)
	} else {
		s.records.Add(int64(bytes.Count(b, lineToken)))
	}
	s.bytesIn.Add(int64(len(b)))
	s.requests.Add(1)
	*bp = b[:0]
	s.pool.Put(bp)
	w.WriteHeader(http.StatusNoContent)
}

// readAll appends r's bytes to b, growing it when full.
func readAll(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
