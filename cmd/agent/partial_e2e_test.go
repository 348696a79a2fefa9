package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// recordSink is an HTTP server that keeps every record it receives (the
// "message" of each ndjson line agent tail sends), in order.
type recordSink struct {
	*httptest.Server
	mu      sync.Mutex
	records []string
}

func newRecordSink(t *testing.T) *recordSink {
	s := &recordSink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rd io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			rd = zr
		}
		body, err := io.ReadAll(rd)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var got []string
		sc := bufio.NewScanner(bytes.NewReader(body))
		for sc.Scan() {
			var rec struct {
				Message *string `json:"message"`
			}
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec.Message == nil {
				http.Error(w, "not a record: "+sc.Text(), http.StatusBadRequest)
				return
			}
			got = append(got, *rec.Message)
		}
		s.mu.Lock()
		s.records = append(s.records, got...)
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *recordSink) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.records
	s.records = nil
	return out
}

// agent tail --once ships a last line without a newline as it is, and
// saves the position after it: a second run, after the file grew, sends
// what was appended to that line as a record of its own, and every later
// line once. Nothing is sent twice, nothing is lost, and the newline that
// only ends the shipped line makes no (empty) record.
func TestTailOnce_PartialLastLineShippedOnceAndItsContinuationIsItsOwnRecord(t *testing.T) {
	t.Parallel()
	const note = "agent tail: 1 last line without a newline shipped as it is; text appended to it later is shipped as a record of its own\n"
	for _, tc := range []struct {
		name          string
		first, append string
		want1, want2  []string
		note2         string // the second run's stderr
	}{
		{name: "continued then more lines", first: "one\ntwo\npar", append: "tial\nthree\n",
			want1: []string{"one", "two", "par"}, want2: []string{"tial", "three"}},
		{name: "only its newline", first: "one\npar", append: "\n",
			want1: []string{"one", "par"}, want2: nil, note2: "agent tail: nothing new to ship"},
		{name: "its CRLF then a line", first: "one\npar", append: "\r\nfour\n",
			want1: []string{"one", "par"}, want2: []string{"four"}},
		{name: "continued without a newline again", first: "a\nb", append: "c",
			want1: []string{"a", "b"}, want2: []string{"c"}, note2: note},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			log := filepath.Join(dir, "app.log")
			require.NoError(t, os.WriteFile(log, []byte(tc.first), 0o644))
			s := newRecordSink(t)
			args := []string{"tail", "--once", log, "--to", s.URL + "/ingest", "--state-dir", filepath.Join(dir, "state")}
			_, errOut, code := runBin(t, args...)
			require.Equal(t, 0, code, errOut)
			require.Equal(t, note, errOut)
			require.Equal(t, tc.want1, s.take())

			f, err := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.WriteString(tc.append)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			_, errOut, code = runBin(t, args...)
			require.Equal(t, 0, code, errOut)
			if tc.note2 == "" {
				require.Empty(t, errOut)
			} else {
				require.Contains(t, errOut, tc.note2)
			}
			require.Equal(t, tc.want2, s.take())
		})
	}
}
