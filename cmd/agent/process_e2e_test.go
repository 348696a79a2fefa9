package main

import (
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

// The three records of the processing end-to-end test: a Java stack trace
// joined by --multiline-start, a JSON line and a plain line.
const (
	stackTrace = "2026-12-06 07:05:44 ERROR request failed\n" +
		"java.lang.IllegalStateException: boom\n" +
		"\tat com.example.Foo.bar(Foo.java:42)\n" +
		"\tat com.example.Main.main(Main.java:7)"
	jsonLine  = `{"level":"info","msg":"started","port":8080}`
	plainLine = `2026-12-06 07:05:45 INFO plain line with "quotes" and \ backslash`
)

func writeProcessLog(t *testing.T) string {
	t.Helper()
	log := filepath.Join(t.TempDir(), "app.log")
	require.NoError(t, os.WriteFile(log, []byte(stackTrace+"\n"+jsonLine+"\n"+plainLine+"\n"), 0o644))
	return log
}

// checkObjects asserts that body holds the three records as JSON objects,
// one per line, with the envelope's host and file.
func checkObjects(t *testing.T, body []byte, log string) {
	t.Helper()
	lines := bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n"))
	require.Len(t, lines, 3, "three records, one line each:\n%s", body)
	host, err := os.Hostname()
	require.NoError(t, err)
	var objs []map[string]any
	for _, l := range lines {
		var o map[string]any
		require.NoError(t, json.Unmarshal(l, &o), "not a JSON object: %s", l)
		require.Equal(t, host, o["host"])
		require.Equal(t, log, o["file"])
		objs = append(objs, o)
	}
	require.Equal(t, stackTrace, objs[0]["message"], "the stack trace is one record, its line breaks kept")
	require.Equal(t, "info", objs[1]["level"], "a JSON record keeps its fields")
	require.Equal(t, "started", objs[1]["msg"])
	require.InDelta(t, 8080, objs[1]["port"], 0)
	require.Equal(t, plainLine, objs[2]["message"])
}

func TestTailOnce_EncodingJSONWithEnvelope_HTTPStdoutAndFile(t *testing.T) {
	t.Parallel()
	log := writeProcessLog(t)
	common := []string{"--multiline-start", `^\d{4}-\d\d-\d\d |^\{`, "--encoding", "json", "--envelope", "host,file"}

	t.Run("http", func(t *testing.T) {
		t.Parallel()
		var mu sync.Mutex
		var bodies [][]byte
		var ctype string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var rd io.Reader = r.Body
			if r.Header.Get("Content-Encoding") == "gzip" {
				zr, err := gzip.NewReader(r.Body)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				rd = zr
			}
			b, err := io.ReadAll(rd)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			mu.Lock()
			bodies = append(bodies, b)
			ctype = r.Header.Get("Content-Type")
			mu.Unlock()
		}))
		t.Cleanup(srv.Close)
		args := append([]string{"tail", "--once", log, "--to", srv.URL, "--http-format", "ndjson", "--state-dir", filepath.Join(t.TempDir(), "state")}, common...)
		_, errOut, code := runBin(t, args...)
		require.Equal(t, 0, code, errOut)
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, "application/x-ndjson", ctype)
		checkObjects(t, bytes.Join(bodies, nil), log)
	})
	t.Run("stdout", func(t *testing.T) {
		t.Parallel()
		out, errOut, code := runBin(t, append([]string{"tail", "--once", log}, common...)...)
		require.Equal(t, 0, code, errOut)
		checkObjects(t, []byte(out), log)
	})
	t.Run("file", func(t *testing.T) {
		t.Parallel()
		dest := filepath.Join(t.TempDir(), "out")
		args := append([]string{"tail", "--once", log, "--to", "file://" + dest, "--state-dir", filepath.Join(t.TempDir(), "state")}, common...)
		_, errOut, code := runBin(t, args...)
		require.Equal(t, 0, code, errOut)
		files, err := filepath.Glob(filepath.Join(dest, "*"))
		require.NoError(t, err)
		require.Len(t, files, 1)
		data, err := os.ReadFile(files[0])
		require.NoError(t, err)
		checkObjects(t, data, log)
	})
}

func TestTailOnce_StdoutDefaultPrintsLinesAsTheyAre(t *testing.T) {
	t.Parallel()
	log := writeProcessLog(t)
	out, errOut, code := runBin(t, "tail", "--once", log)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, stackTrace+"\n"+jsonLine+"\n"+plainLine+"\n", out, "tail -F: the lines as they are")
}

func TestTailOnce_LogFormatAndHostname(t *testing.T) {
	t.Parallel()
	log := filepath.Join(t.TempDir(), "access.log")
	line := `203.0.113.9 - - [06/Dec/2026:07:05:44 +0000] "GET /index.html HTTP/1.1" 200 512 "-" "curl/8.5.0"`
	require.NoError(t, os.WriteFile(log, []byte(line+"\nnot an access line\n"), 0o644))
	out, errOut, code := runBin(t, "tail", "--once", log, "--encoding", "json", "--log-format", "apache_combined", "--add-hostname", "hostname")
	require.Equal(t, 0, code, errOut)
	host, _ := os.Hostname()
	lines := bytes.Split(bytes.TrimSuffix([]byte(out), []byte("\n")), []byte("\n"))
	require.Len(t, lines, 2)
	var a, b map[string]any
	require.NoError(t, json.Unmarshal(lines[0], &a))
	require.Equal(t, "GET /index.html HTTP/1.1", a["request"])
	require.Equal(t, "200", a["response"])
	require.Equal(t, host, a["hostname"])
	require.NoError(t, json.Unmarshal(lines[1], &b))
	require.Equal(t, "not an access line", b["message"], "a line that does not parse passes, as text")
	require.Equal(t, host, b["hostname"])
}
