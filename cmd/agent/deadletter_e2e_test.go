package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent"
)

// limitSink is a real HTTP server that refuses bodies over limit bytes
// (on the wire or decompressed) with 413, like a proxy's body limit, and
// counts the numbered lines of the bodies it accepts.
type limitSink struct {
	limit int
	// slowFirst requests are answered after a pause, so that the file is
	// read meanwhile and later requests carry many aggregates.
	slowFirst int
	mu        sync.Mutex
	requests  int
	lines     map[int]int
	other     []string
	too       int
}

func (s *limitSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.requests++
	slow := s.requests <= s.slowFirst
	s.mu.Unlock()
	if slow {
		time.Sleep(500 * time.Millisecond)
	}
	body := raw
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			body, err = io.ReadAll(zr)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(raw) > s.limit || len(body) > s.limit {
		s.too++
		http.Error(w, "413 Request Entity Too Large", http.StatusRequestEntityTooLarge)
		return
	}
	for _, l := range bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n")) {
		if n, ok := lineNumber(l); ok {
			s.lines[n]++
		} else {
			s.other = append(s.other, string(l))
		}
	}
}

func TestTailOnce_413SplitsRequests_AllDeliveredNoneDeadLettered(t *testing.T) {
	t.Parallel()
	const n = 20_000
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, n, 104)
	s := &limitSink{limit: 64 << 10, slowFirst: 8, lines: map[int]int{}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	state := filepath.Join(dir, "state")

	_, errOut, code := runBin(t, "tail", "--once", log, "--to", srv.URL+"/ingest", "--state-dir", state, "--gzip=false")

	require.Equal(t, 0, code, errOut)
	s.mu.Lock()
	defer s.mu.Unlock()
	require.Positive(t, s.too, "the server refused the first requests")
	require.Equal(t, n, len(s.lines))
	for i := range n {
		require.Equal(t, 1, s.lines[i], "line %d", i)
	}
	_, err := os.Stat(filepath.Join(state, agent.DeadLetterFile))
	require.ErrorIs(t, err, os.ErrNotExist, "nothing dead-lettered")
}

func TestTailOnce_OneRecordOverTheServerLimit_OnlyItIsDeadLettered(t *testing.T) {
	t.Parallel()
	const n = 3000
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, n/2, 104)
	big := "BIG " + strings.Repeat("z", 100<<10) + "\n"
	f, err := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(big)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	writeLog(t, log, n/2, n, 104)
	s := &limitSink{limit: 64 << 10, slowFirst: 8, lines: map[int]int{}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	state := filepath.Join(dir, "state")

	_, errOut, code := runBin(t, "tail", "--once", log, "--to", srv.URL+"/ingest", "--state-dir", state, "--gzip=false")

	require.Equal(t, 1, code, "a record was dead-lettered: %s", errOut)
	s.mu.Lock()
	require.Equal(t, n, len(s.lines), "every other line arrived")
	require.Empty(t, s.other)
	s.mu.Unlock()
	out, errOut, code := runBin(t, "dead-letter", "--state-dir", state, "--json")
	require.Equal(t, 0, code, errOut)
	recs := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, recs, 1, "only the oversized record")
	var r agent.DeadLetterRecord
	require.NoError(t, json.Unmarshal([]byte(recs[0]), &r))
	require.Equal(t, strings.TrimSuffix(big, "\n"), string(r.Data))
	require.Contains(t, r.Reason, "413")
}

func TestTail_URLSecretsAreInNoLogAndNoDeadLetterLine(t *testing.T) {
	t.Parallel()
	const secret = "s3cretVALUE"
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		calls++
		c := calls
		mu.Unlock()
		switch {
		case c <= 2: // retried: logged as a warning
			http.Error(w, "try later", http.StatusServiceUnavailable)
		case c%2 == 1:
			w.Header().Set("Location", "https://bob:"+secret+"@elsewhere.example/in?token="+secret)
			w.WriteHeader(http.StatusTemporaryRedirect)
		default:
			http.Error(w, "bad request for "+r.URL.String(), http.StatusBadRequest)
		}
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, 6, 80)
	state := filepath.Join(dir, "state")
	to := strings.Replace(srv.URL, "http://", "http://user:"+secret+"@", 1) + "/ingest?api_key=" + secret

	_, errOut, code := runBin(t, "tail", "--once", log, "--to", to, "--state-dir", state)

	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "send failed; retrying", "the warning is logged")
	require.NotContains(t, errOut, secret)
	var dl []byte
	parts, err := agent.DeadLetterFiles(state)
	require.NoError(t, err)
	require.NotEmpty(t, parts)
	for _, p := range parts {
		b, err := os.ReadFile(p.Path)
		require.NoError(t, err)
		dl = append(dl, b...)
	}
	require.Contains(t, string(dl), "api_key=REDACTED")
	require.NotContains(t, string(dl), secret)
	out, errOut, _ := runBin(t, "dead-letter", "--state-dir", state)
	require.NotContains(t, out+errOut, secret)
}

func TestDeadLetter_StateDirWithoutAgentStateFails(t *testing.T) {
	t.Parallel()
	empty := t.TempDir()
	_, errOut, code := runBin(t, "dead-letter", "--state-dir", empty)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "holds no agent state")
	_, errOut, code = runBin(t, "dead-letter", "--state-dir", filepath.Join(empty, "typo"))
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "no such file")
}

// writeDeadLetters writes n numbered records of flow main as the agent does.
func writeDeadLetters(t *testing.T, state string, n int) {
	t.Helper()
	require.NoError(t, os.MkdirAll(state, 0o700))
	f, err := os.Create(filepath.Join(state, agent.DeadLetterFile))
	require.NoError(t, err)
	enc := json.NewEncoder(f)
	buf := make([]byte, 0, 128)
	for i := range n {
		buf = numberedLine(buf[:0], i, 100)
		data := bytes.TrimSuffix(buf, []byte("\n"))
		text := string(data)
		require.NoError(t, enc.Encode(agent.DeadLetterRecord{Time: time.Now().UTC(), Flow: "main", Output: "sink",
			Reason: "rejected: 400 schema mismatch", PartitionKey: "pk", Data: data, Text: &text}))
	}
	require.NoError(t, f.Close())
}

func replayConfigFile(t *testing.T, dir, state, url string) string {
	t.Helper()
	cfg := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`
state_dir: %s
admin: {listen: "off"}
sources:
  - name: app
    type: file
    file: {include: [%q]}
outputs:
  - name: sink
    type: http
    http: {url: %q}
flows:
  - name: main
    sources: [app]
    output: sink
`, state, filepath.Join(dir, "*.log"), url)), 0o600))
	return cfg
}

func TestDeadLetterReplay_Kill9MidReplayLosesNothing(t *testing.T) {
	t.Parallel()
	const n = 20_000
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	writeDeadLetters(t, state, n)
	s := newSink(t)
	slow := func(_ int64, w http.ResponseWriter) bool { time.Sleep(20 * time.Millisecond); return false }
	s.respond.Store(&slow)
	cfg := replayConfigFile(t, dir, state, s.URL())

	p := startAgent(t, "dead-letter", "replay", "-c", cfg)
	require.Eventually(t, func() bool { return s.distinct() >= n/4 }, time.Minute, time.Millisecond)
	require.NoError(t, p.cmd.Process.Kill()) // SIGKILL mid-replay
	<-p.done
	got := s.distinct()
	require.Less(t, got, n, "killed before the end")

	// What is left is still readable, and holds every record not delivered.
	out, errOut, code := runBin(t, "dead-letter", "--state-dir", state, "--json")
	require.Equal(t, 0, code, errOut)
	left := map[int]bool{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r agent.DeadLetterRecord
		require.NoError(t, json.Unmarshal([]byte(l), &r))
		num, ok := lineNumber(r.Data)
		require.True(t, ok)
		left[num] = true
	}
	s.mu.Lock()
	for i := range n {
		require.True(t, s.counts[i] > 0 || left[i], "record %d neither delivered nor in the dead-letter files", i)
	}
	s.mu.Unlock()

	s.respond.Store(nil)
	_, errOut, code = runBin(t, "dead-letter", "replay", "-c", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, errOut, "0 rejected again")
	requireAllArrived(t, s, n, true)
	out, errOut, code = runBin(t, "dead-letter", "--state-dir", state)
	require.Equal(t, 0, code, errOut)
	require.Empty(t, out)
	require.Contains(t, errOut, "no record is dead-lettered now: everything was replayed (the last agent dead-letter replay to deliver any finished at ")
}

func TestDeadLetterReplayTail_SendsWhatTailDeadLettered(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, 50, 80)
	s := newSink(t)
	reject := func(_ int64, w http.ResponseWriter) bool {
		http.Error(w, "schema mismatch", http.StatusBadRequest)
		return true
	}
	s.respond.Store(&reject)
	state := filepath.Join(dir, "state")
	_, errOut, code := runBin(t, "tail", "--once", log, "--to", s.URL(), "--state-dir", state)
	require.Equal(t, 1, code, errOut)
	require.Zero(t, s.distinct())

	s.respond.Store(nil) // the cause is fixed
	_, errOut, code = runBin(t, "dead-letter", "replay", "--tail", log, "--to", s.URL(), "--state-dir", state)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, errOut, "50 delivered")
	requireAllArrived(t, s, 50, false)
	out, errOut, code := runBin(t, "dead-letter", "--state-dir", state)
	require.Equal(t, 0, code)
	require.Empty(t, out)
	require.NotContains(t, errOut, "nothing was dead-lettered")
	require.Contains(t, errOut, "everything was replayed")
}

// agent dead-letter after a replay delivered everything says so, with when
// and how many (from the replay's lock file), and a dead-letter file that
// exists and holds nothing is said to be empty: before, both read
// "nothing was dead-lettered". A directory where nothing was ever
// dead-lettered still says that.
func TestDeadLetter_AfterReplaySaysEverythingWasReplayed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	writeDeadLetters(t, state, 3)
	s := newSink(t)
	cfg := replayConfigFile(t, dir, state, s.URL())

	before := time.Now().Add(-time.Second)
	_, errOut, code := runBin(t, "dead-letter", "replay", "-c", cfg)
	require.Equal(t, 0, code, errOut)
	requireAllArrived(t, s, 3, false)
	out, errOut, code := runBin(t, "dead-letter", "--state-dir", state)
	require.Equal(t, 0, code, errOut)
	require.Empty(t, out)
	m := regexp.MustCompile(`^agent dead-letter: no dead-letter.ndjson in .*: no record is dead-lettered now: everything was replayed \(the last agent dead-letter replay to deliver any finished at (\S+) and delivered 3 records\)\n$`).FindStringSubmatch(errOut)
	require.NotNil(t, m, errOut)
	at, err := time.Parse(time.RFC3339, m[1])
	require.NoError(t, err)
	require.WithinRange(t, at, before, time.Now().Add(time.Second))

	// A replay with nothing to send keeps what the last one recorded.
	summary := errOut
	_, errOut, code = runBin(t, "dead-letter", "replay", "-c", cfg)
	require.Equal(t, 0, code, errOut)
	_, errOut, _ = runBin(t, "dead-letter", "--state-dir", state)
	require.Equal(t, summary, errOut)

	// An empty dead-letter file (new records dead-lettered after, then
	// emptied by hand; or --file): empty, and what the replay did.
	require.NoError(t, os.WriteFile(filepath.Join(state, agent.DeadLetterFile), nil, 0o600))
	out, errOut, code = runBin(t, "dead-letter", "--state-dir", state)
	require.Equal(t, 0, code, errOut)
	require.Empty(t, out)
	require.Contains(t, errOut, "agent dead-letter: no record is dead-lettered now: everything was replayed (the last")
	_, errOut, code = runBin(t, "dead-letter", "--file", filepath.Join(state, agent.DeadLetterFile))
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "agent dead-letter: "+filepath.Join(state, agent.DeadLetterFile)+" is empty\n", errOut)
	_, errOut, code = runBin(t, "dead-letter", "--file", filepath.Join(state, "typo.ndjson"))
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "no such file")

	// Never replayed: an empty file is empty; no file, nothing was
	// dead-lettered.
	other := filepath.Join(dir, "other")
	require.NoError(t, os.MkdirAll(other, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(other, agent.DeadLetterFile), nil, 0o600))
	_, errOut, code = runBin(t, "dead-letter", "--state-dir", other)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "agent dead-letter: the dead-letter file is empty\n", errOut)
	require.NoError(t, os.Remove(filepath.Join(other, agent.DeadLetterFile)))
	require.NoError(t, os.WriteFile(filepath.Join(other, "checkpoints.json"), []byte("{}"), 0o600))
	_, errOut, code = runBin(t, "dead-letter", "--state-dir", other)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "agent dead-letter: no dead-letter.ndjson in "+other+": nothing was dead-lettered\n", errOut)
}

// Two replays of one state directory at once would both send the file the
// first renamed aside (the second reads it from the offset saved last): the
// second is refused, and every record arrives once.
func TestDeadLetterReplay_SecondReplayAtOnceIsRefusedNoDuplicates(t *testing.T) {
	t.Parallel()
	const n = 10_000
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	writeDeadLetters(t, state, n)
	s := newSink(t)
	slow := func(_ int64, w http.ResponseWriter) bool { time.Sleep(20 * time.Millisecond); return false }
	s.respond.Store(&slow)
	cfg := replayConfigFile(t, dir, state, s.URL())

	p := startAgent(t, "dead-letter", "replay", "-c", cfg)
	require.Eventually(t, func() bool { return s.distinct() >= n/10 }, time.Minute, time.Millisecond)
	_, errOut, code := runBin(t, "dead-letter", "replay", "-c", cfg)
	require.Equal(t, 1, code, errOut)
	require.Equal(t, "agent dead-letter replay: another agent dead-letter replay is running on "+state+"; wait for it to end (it saves its progress: running it again later goes on where it stopped)\n", errOut)
	require.Equal(t, 0, p.wait(t, time.Minute), p.stderr.String())
	requireAllArrived(t, s, n, false)
}

// agent dead-letter replay --flow F succeeds (exit 0) when F's records were
// all delivered: the other flows' records stay, as asked, and are no
// failure (it exited 1, so `replay --flow F && ...` read as F failed).
func TestDeadLetterReplay_FlowDeliveredExits0OtherFlowsStay(t *testing.T) {
	t.Parallel()
	const n = 10
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	writeDeadLetters(t, state, n)
	f, err := os.OpenFile(filepath.Join(state, agent.DeadLetterFile), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	enc := json.NewEncoder(f)
	for i := range 3 {
		text := fmt.Sprintf("other %d", i)
		require.NoError(t, enc.Encode(agent.DeadLetterRecord{Time: time.Now().UTC(), Flow: "other", Output: "sink",
			Reason: "rejected", PartitionKey: "pk", Data: []byte(text), Text: &text}))
	}
	require.NoError(t, f.Close())
	s := newSink(t)
	cfg := replayConfigFile(t, dir, state, s.URL())

	_, errOut, code := runBin(t, "dead-letter", "replay", "-c", cfg, "--flow", "main")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "agent dead-letter replay: 10 delivered, 0 rejected again, 0 not replayed (kept in the dead-letter file); 3 of other flows than main left as they were\n", errOut)
	requireAllArrived(t, s, n, false)
	out, errOut, code := runBin(t, "dead-letter", "--state-dir", state, "--json")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, 3, strings.Count(out, `"flow":"other"`), out)
	require.Equal(t, 3, strings.Count(out, "\n"), out)

	// Without --flow, records of a flow the config lacks are a failure.
	_, errOut, code = runBin(t, "dead-letter", "replay", "-c", cfg)
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "3 not replayed")
}

// A dead-letter file with lines that are not records (a torn write, an
// edit): the listing shows the records, names each bad line, and exits 1
// (it exited 0: a script read the listing as whole); replay keeps them.
func TestDeadLetter_CorruptLinesAreNamedAndExit1(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	writeDeadLetters(t, state, 2)
	path := filepath.Join(state, agent.DeadLetterFile)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("this is not json\n{\"flow\":\"main\",\"data\":\"!!\"}\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())

	out, errOut, code := runBin(t, "dead-letter", "--state-dir", state)
	require.Equal(t, 1, code, errOut)
	require.Equal(t, 2, strings.Count(out, "reason: rejected: 400 schema mismatch"), out)
	require.Contains(t, errOut, path+": line 3 is not a dead-letter record: ")
	require.Contains(t, errOut, path+": line 4 is not a dead-letter record: ")
	require.Contains(t, errOut, "agent dead-letter: 2 lines are not dead-letter records (named above; --json prints them as they are)")

	s := newSink(t)
	cfg := replayConfigFile(t, dir, state, s.URL())
	_, errOut, code = runBin(t, "dead-letter", "replay", "-c", cfg)
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "2 delivered, 0 rejected again, 2 not replayed")
	requireAllArrived(t, s, 2, false)
	out, _, code = runBin(t, "dead-letter", "--state-dir", state, "--json")
	require.Equal(t, 0, code)
	require.Equal(t, "this is not json\n{\"flow\":\"main\",\"data\":\"!!\"}\n", out)
}

// Without -c, and no config at the default path, the dead-letter commands
// say what to give them rather than only that /etc/agent/agent.yaml is
// missing.
func TestDeadLetter_NoConfigSaysWhatToGive(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/etc/agent/agent.yaml"); err == nil {
		t.Skip("this host has /etc/agent/agent.yaml")
	}
	state := t.TempDir()
	_, errOut, code := runBin(t, "dead-letter", "replay", "--state-dir", state)
	require.Equal(t, 2, code, errOut)
	require.Contains(t, errOut, "name it with -c FILE (for what agent tail dead-lettered: --tail PATH... --to URL)")
	_, errOut, code = runBin(t, "dead-letter")
	require.Equal(t, 2, code, errOut)
	require.Contains(t, errOut, "name the agent's config with -c FILE, or its state directory with --state-dir DIR")
}

// --output or --flow naming nothing in the config lists what is there.
func TestDeadLetterReplay_UnknownOutputOrFlowListsTheNames(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	writeDeadLetters(t, state, 1)
	cfg := replayConfigFile(t, dir, state, "http://127.0.0.1:1/x")
	_, errOut, code := runBin(t, "dead-letter", "replay", "-c", cfg, "--output", "snik")
	require.Equal(t, 1, code, errOut)
	require.Equal(t, "agent dead-letter replay: no output named \"snik\" in the config (its outputs: sink)\n", errOut)
	_, errOut, code = runBin(t, "dead-letter", "replay", "-c", cfg, "--flow", "mian")
	require.Equal(t, 1, code, errOut)
	require.Equal(t, "agent dead-letter replay: no flow named \"mian\" in the config (its flows: main)\n", errOut)
}
