package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// How `agent tail` behaves in a shell: pipes, signals, streams, exit
// statuses. Each test runs the real binary.

// writeRandomLog writes n lines of random printable bytes and lengths (0 to
// 300 bytes), so that any reordering or loss shows in a byte comparison.
func writeRandomLog(t *testing.T, path string, n int) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(n), 7))
	pool := make([]byte, 4096)
	for i := range pool {
		pool[i] = byte(' ' + r.IntN(95))
	}
	b := make([]byte, 0, n*160)
	for i := range n {
		b = strconv.AppendInt(b, int64(i), 10)
		off, l := r.IntN(len(pool)-300), r.IntN(300)
		b = append(append(append(b, ' '), pool[off:off+l]...), '\n')
	}
	require.NoError(t, os.WriteFile(path, b, 0o644))
	return b
}

func TestTail_HeadClosesStdout_ExitsPromptlyWith0AndRemovesItsTempDir(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		lines int
	}{
		{"idle after the last line", 3}, // nothing more to write: the closed pipe is noticed by poll
		{"still writing", 200_000},      // a write fails with EPIPE
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			log := filepath.Join(dir, "app.log")
			writeRandomLog(t, log, tc.lines)
			tmp := filepath.Join(dir, "tmp")
			require.NoError(t, os.Mkdir(tmp, 0o700))
			cmd := agentCmd("tail", log)
			cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())
			first, err := bufio.NewReader(out).ReadString('\n') // head -1
			require.NoError(t, err)
			require.Equal(t, "0 ", first[:2])
			start := time.Now()
			require.NoError(t, out.Close())
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("agent tail kept running after its stdout was closed; stderr:\n%s", stderr.String())
			}
			require.Equal(t, 0, cmd.ProcessState.ExitCode(), "stderr: %s", stderr.String())
			require.Empty(t, stderr.String(), "a closed stdout is no error")
			t.Logf("exited %s after stdout was closed", time.Since(start))
			left, err := os.ReadDir(tmp)
			require.NoError(t, err)
			require.Empty(t, left, "the temporary state directory is removed")
		})
	}
}

func TestTail_SIGHUPIsLoggedAndIgnored(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"tail", "run"} {
		t.Run(cmd, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			log := filepath.Join(dir, "app.log")
			writeLog(t, log, 0, 100, 80)
			s := newSink(t)
			args := []string{"tail", log, "--to", s.URL(), "--state-dir", filepath.Join(dir, "state")}
			if cmd == "run" {
				cfgPath := filepath.Join(dir, "agent.yaml")
				require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
state_dir: %s
admin: {listen: off}
sources:
  - {name: app, type: file, file: {include: [%q], start_at: beginning, poll_interval: 50ms}}
outputs:
  - {name: sink, type: http, http: {url: %q}}
flows:
  - {name: main, sources: [app], output: sink}
`, filepath.Join(dir, "state"), log, s.URL())), 0o600))
				args = []string{"run", "-c", cfgPath}
			}
			p := startAgent(t, args...)
			require.Eventually(t, func() bool { return s.distinct() == 100 }, 30*time.Second, 10*time.Millisecond)
			for i := 1; i <= 2; i++ {
				// One at a time: two pending SIGHUPs merge into one.
				require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
				// agent run reloads its configuration (the same here: every flow kept): it keeps shipping.
				want := map[string]string{"tail": "SIGHUP ignored", "run": "configuration reloaded"}[cmd]
				require.Eventually(t, func() bool { return strings.Count(p.output(), want) == i }, 10*time.Second, 10*time.Millisecond)
			}
			// Still shipping: lines written after the SIGHUPs arrive.
			writeLog(t, log, 100, 200, 80)
			require.Eventually(t, func() bool { return s.distinct() == 200 }, 30*time.Second, 10*time.Millisecond)
			require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
			require.Equal(t, 0, p.wait(t, 30*time.Second), p.stderr.String())
			requireAllArrived(t, s, 200, cmd == "run")
		})
	}
}

func TestTail_SignalToProcessAndGroup_OneGracefulShutdownEverythingDelivered(t *testing.T) {
	t.Parallel()
	const n = 20_000
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, n, 100)
	s := newSink(t)
	// Slow answers: the graceful shutdown has work left when the second
	// delivery of the signal comes; an immediate exit would leave it.
	// Slow from the start: a fast agent could otherwise deliver everything
	// before the signals, and exit before the second one reaches its group.
	slow := func(_ int64, _ http.ResponseWriter) bool { time.Sleep(100 * time.Millisecond); return false }
	s.respond.Store(&slow)
	admin := freeAddr(t)
	cmd := agentCmd("tail", log, "--to", s.URL(), "--state-dir", filepath.Join(dir, "state"), "--admin", admin,
		"--concurrency", "1")
	cmd.SysProcAttr.Setpgid = true // and Pdeathsig (agentCmd)
	var stderr syncWriter
	stderr.w = &bytes.Buffer{}
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-done
		}
	})
	require.Eventually(t, func() bool { return metric(admin, "agent_records_received_total") >= n }, time.Minute, 20*time.Millisecond)
	// As GNU timeout does: the process, then its process group.
	require.NoError(t, syscall.Kill(cmd.Process.Pid, syscall.SIGTERM))
	time.Sleep(50 * time.Millisecond) // two deliveries, not one merged pending signal
	require.NoError(t, syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM))
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("no exit")
	}
	require.Equal(t, 0, cmd.ProcessState.ExitCode(), stderr.w.String())
	require.NotContains(t, stderr.w.String(), "second signal")
	s.respond.Store(nil)
	missing, _, _ := s.check(n)
	if len(missing) > 0 {
		// What the shutdown deadline did not deliver is in the spool:
		// the next run sends it.
		p := startAgent(t, "tail", log, "--once", "--to", s.URL(), "--state-dir", filepath.Join(dir, "state"))
		require.Equal(t, 0, p.wait(t, time.Minute), p.stderr.String())
	}
	requireAllArrived(t, s, n, true)
}

func TestTailOnce_StdoutAndFileDestinationsKeepTheFileByteForByte(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	want := writeRandomLog(t, log, 100_000) // ~15 MB
	t.Run("stdout", func(t *testing.T) {
		out, err := os.Create(filepath.Join(dir, "stdout"))
		require.NoError(t, err)
		defer out.Close()
		cmd := agentCmd("tail", "--once", log)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = out, &stderr
		require.NoError(t, cmd.Run(), stderr.String())
		got, err := os.ReadFile(out.Name())
		require.NoError(t, err)
		requireSameBytes(t, want, got)
	})
	t.Run("file", func(t *testing.T) {
		dest := filepath.Join(dir, "dest")
		_, errOut, code := runBin(t, "tail", "--once", log, "--to", "file://"+dest, "--state-dir", filepath.Join(dir, "state"))
		require.Equal(t, 0, code, errOut)
		got, err := os.ReadFile(filepath.Join(dest, "destination.ndjson"))
		require.NoError(t, err)
		requireSameBytes(t, want, got)
	})
}

func requireSameBytes(t *testing.T, want, got []byte) {
	t.Helper()
	if bytes.Equal(want, got) {
		return
	}
	i := 0
	for i < min(len(want), len(got)) && want[i] == got[i] {
		i++
	}
	lo := max(i-40, 0)
	t.Fatalf("output differs at byte %d of %d (got %d bytes): want %q, got %q", i, len(want), len(got),
		want[lo:min(i+40, len(want))], got[lo:min(i+40, len(got))])
}

func TestTail_StdinToStdout(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"tail", "-", "--once"}, {"tail", "-"}} {
		cmd := agentCmd(args...)
		cmd.Stdin = strings.NewReader("one\ntwo\r\n\nlast without newline")
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		require.NoError(t, cmd.Run(), "%v: %s", args, errOut.String())
		require.Equal(t, "one\ntwo\n\nlast without newline\n", out.String(), args)
		require.Empty(t, errOut.String())
	}
}

func TestTailOnce_StdinAndAFileTogether(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, 500, 60)
	cmd := agentCmd("tail", "--once", "-", log, "--to", "file://"+filepath.Join(dir, "out"), "--state-dir", filepath.Join(dir, "state"))
	var in bytes.Buffer
	for i := 500; i < 1000; i++ {
		in.Write(numberedLine(nil, i, 60))
	}
	cmd.Stdin = &in
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	require.NoError(t, cmd.Run(), errOut.String())
	data, err := os.ReadFile(filepath.Join(dir, "out", "destination.ndjson"))
	require.NoError(t, err)
	seen := map[int]int{}
	for _, l := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		n, ok := lineNumber(l)
		require.True(t, ok, "%q", l)
		seen[n]++
	}
	require.Len(t, seen, 1000)
}

func TestTail_NamedPipeOnTheCommandLineIsRead(t *testing.T) {
	t.Parallel()
	fifo := filepath.Join(t.TempDir(), "in.fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	cmd := agentCmd("tail", fifo)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	require.NoError(t, cmd.Start())
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // waits for the agent's open
	require.NoError(t, err)
	_, err = w.WriteString("a\nb\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, errOut.String())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("agent tail FIFO did not end with the pipe; stderr: %s", errOut.String())
	}
	require.Equal(t, "a\nb\n", out.String())
	require.NotContains(t, errOut.String(), "no such file")
}

func TestTailOnce_UnreadableNamedFileExitsNonZeroNamingIt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	loop := filepath.Join(dir, "loop.log")
	require.NoError(t, os.Symlink(loop, loop)) // ELOOP: unreadable even by root
	sub := filepath.Join(dir, "logs")
	require.NoError(t, os.Mkdir(sub, 0o700))
	for _, p := range []string{loop, sub} {
		_, errOut, code := runBin(t, "tail", "--once", "../../testdata/sample.log", p)
		require.Equal(t, 1, code, errOut)
		require.Contains(t, errOut, p+": cannot be read")
	}
	if os.Geteuid() != 0 {
		noPerm := filepath.Join(dir, "secret.log")
		require.NoError(t, os.WriteFile(noPerm, []byte("x\n"), 0o000))
		_, errOut, code := runBin(t, "tail", "--once", noPerm)
		require.Equal(t, 1, code, errOut)
		require.Contains(t, errOut, noPerm+": cannot be read: permission denied")
	}
}

func TestTailOnce_InterruptedWithTheDestinationDownExitsNonZeroWithTheCount(t *testing.T) {
	t.Parallel()
	const n = 1000
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, n, 80)
	down := newSink(t)
	down.stop()
	admin := freeAddr(t)
	p := startAgent(t, "tail", "--once", log, "--to", down.URL(), "--state-dir", filepath.Join(dir, "state"), "--admin", admin)
	require.Eventually(t, func() bool { return metric(admin, "agent_records_received_total") >= n }, time.Minute, 20*time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
	require.Equal(t, 1, p.wait(t, time.Minute), p.stderr.String())
	require.Contains(t, p.stderr.String(), fmt.Sprintf("interrupted: %d records were not delivered", n))
}

func TestTailOnce_SavedPositionsAtTheEndSayNothingToShip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, 10, 80)
	args := []string{"tail", "--once", log, "--to", "file://" + filepath.Join(dir, "out"), "--state-dir", filepath.Join(dir, "state")}
	_, errOut, code := runBin(t, args...)
	require.Equal(t, 0, code, errOut)
	require.NotContains(t, errOut, "nothing new")
	_, errOut, code = runBin(t, args...)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, errOut, "nothing new to ship")
	require.Contains(t, errOut, "--reset")
	_, errOut, code = runBin(t, append(args, "--reset")...)
	require.Equal(t, 0, code, errOut)
	require.NotContains(t, errOut, "nothing new")
}

func TestTailOnce_MaxRetryDurationDeadLettersWhatTheDestinationKeepsRefusing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, 10, 80)
	s := newSink(t)
	unavailable := func(_ int64, w http.ResponseWriter) bool {
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return true
	}
	s.respond.Store(&unavailable)
	state := filepath.Join(dir, "state")
	_, errOut, code := runBin(t, "tail", "--once", log, "--to", s.URL(), "--state-dir", state, "--max-retry-duration", "500ms")
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "dead-letter")
}

// --to stdout: names standard output as blackhole: names the blackhole (the
// config's output types): it was an unknown scheme. `| head -1` ends it
// quietly, exit 0, nothing on stderr.
func TestTail_ToStdoutColonIsStandardOutput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, 50_000, 40)
	for _, to := range []string{"stdout:", "stdout://"} {
		t.Run(to, func(t *testing.T) {
			out, errOut, code := runBin(t, "tail", "--once", log, "--to", to)
			require.Equal(t, 0, code, errOut)
			require.Equal(t, 50_000, strings.Count(out, "\n"))

			cmd := exec.Command("sh", "-c", `"$0" tail "$1" --to "$2" | head -1`, agentBin, log, to)
			var o, e bytes.Buffer
			cmd.Stdout, cmd.Stderr = &o, &e
			require.NoError(t, cmd.Run(), e.String())
			require.Equal(t, 1, strings.Count(o.String(), "\n"))
			require.Empty(t, e.String())
		})
	}
}

// agent tail --once stopped by Ctrl-C before it read its files to their
// end has not done its job, even if everything it read was delivered: it
// exited 0 and said nothing, so `agent tail --once app.log --to URL && rm
// app.log` removed lines never sent. It says how much is left and exits 1;
// the next run sends the rest, nothing twice.
func TestTailOnce_InterruptedBeforeTheEndOfTheFilesExits1(t *testing.T) {
	t.Parallel()
	const n = 200_000
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	state := filepath.Join(dir, "state")
	writeLog(t, log, 0, n, 100)
	s := newSink(t)
	slow := func(int64, http.ResponseWriter) bool {
		time.Sleep(20 * time.Millisecond) // the reader waits for the destination
		return false
	}
	s.respond.Store(&slow)
	p := startAgent(t, "tail", "--once", log, "--to", s.URL(), "--state-dir", state)
	p.waitFor(t, time.Minute, func() bool { return s.requests.Load() >= 2 }, "no request arrived")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
	require.Equal(t, 1, p.wait(t, time.Minute), p.output())
	require.Regexp(t, `agent tail: interrupted before the files were read to their end: \S+ \S+ left \(the next run of the same command reads them from where it stopped\)`, p.output())
	require.Less(t, s.distinct(), n, "the run was interrupted early")

	s.respond.Store(nil)
	p = startAgent(t, "tail", "--once", log, "--to", s.URL(), "--state-dir", state)
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
	requireAllArrived(t, s, n, false)
}

// A line longer than --max-record-bytes is cut: `agent tail -` said nothing
// (the counter is a metric nobody sees there); the warning is on stderr,
// once for the run's two long lines.
func TestTail_StdinTruncatedLineIsWarnedOnStderr(t *testing.T) {
	t.Parallel()
	cmd := agentCmd("tail", "-", "--max-record-bytes", "1KiB")
	long := strings.Repeat("x", 3000)
	cmd.Stdin = strings.NewReader("one\n" + long + "\n" + long + "\nlast\n")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	require.NoError(t, cmd.Run(), errOut.String())
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 4)
	require.Less(t, len(lines[1]), len(long), "cut")
	stderr := errOut.String()
	require.Equal(t, 1, strings.Count(stderr, "longer than max_record_bytes was truncated"), stderr)
	require.Contains(t, stderr, "WARN")
	require.Contains(t, stderr, "stream=-")
	require.Contains(t, stderr, "max_record_bytes=1024")
	require.Contains(t, stderr, "line_bytes=3001")
}

// A line longer than the longest record is cut (the record is not the
// line): agent tail says so on stderr, with the flag that sets the limit,
// for files and standard input alike. It was silent: only a metric no one
// reads under agent tail counted it.
func TestTailOnce_TruncatedLongLinesAreSaidOnStderr(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	content := "short\n" + strings.Repeat("x", 40<<10) + "\n" + strings.Repeat("y", 40<<10) + "\nlast\n"
	require.NoError(t, os.WriteFile(log, []byte(content), 0o644))
	const note = "agent tail: 2 lines longer than the longest record taken were truncated (the rest of each skipped); --max-record-bytes sets the limit, up to what the destination takes\n"
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"file", []string{"tail", "--once", log, "--max-record-bytes", "16KiB"}},
		{"stdin", []string{"tail", "-", "--max-record-bytes", "16KiB"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := agentCmd(tc.args...)
			cmd.Stdin = strings.NewReader(content)
			var out, errOut bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errOut
			require.NoError(t, cmd.Run(), errOut.String())
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			require.Len(t, lines, 4, "one record per line")
			require.Equal(t, []string{"short", "last"}, []string{lines[0], lines[3]})
			require.Less(t, len(lines[1]), 17<<10, "cut to about --max-record-bytes")
			// The end says how many; the source's WARN (at most one a
			// minute) came while it read, with the file and the sizes.
			require.True(t, strings.HasSuffix(errOut.String(), note), errOut.String())
			require.Equal(t, 1, strings.Count(errOut.String(), note), errOut.String())
			require.LessOrEqual(t, strings.Count(errOut.String(), "level=WARN"), 1, errOut.String())
		})
	}
	// Lines within the limit: nothing said.
	_, errOut, code := runBin(t, "tail", "--once", log)
	require.Equal(t, 0, code, errOut)
	require.Empty(t, errOut)
}

// A directory written out as a PATH ends the run at once (exit 1, as with
// --once), saying the glob that follows its files: it never becomes a
// file, and without --once the run went on following nothing (or the other
// files, missing the directory's) until interrupted.
func TestTail_DirectoryAsPathEndsTheRunSayingTheGlob(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	require.NoError(t, os.Mkdir(logs, 0o755))
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, 3, 20)
	want := "agent tail: " + logs + ": cannot be read: is a directory (quote a glob to follow its files: '" + filepath.Join(logs, "*.log") + "')\n"
	for _, args := range [][]string{
		{"tail", logs},
		{"tail", "--once", logs},
		{"tail", log, logs, "--to", "file://" + filepath.Join(dir, "dest")},
	} {
		t.Run(strings.Join(args[1:], " "), func(t *testing.T) {
			cmd := agentCmd(args...)
			cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+filepath.Join(dir, "state"))
			var out, errOut bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errOut
			require.NoError(t, cmd.Start())
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("agent tail kept running on a directory; stderr: %q", errOut.String())
			}
			require.Equal(t, 1, cmd.ProcessState.ExitCode(), errOut.String())
			require.Equal(t, want, errOut.String())
			require.Empty(t, out.String())
		})
	}
}

// A --max-record-bytes the destination cannot take is said with the flag's
// name and --to, not the configuration agent tail makes
// (sources[0].file.max_record_bytes, output "destination"), which the user
// never wrote.
func TestTail_MaxRecordBytesTooLargeNamesTheFlag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	writeLog(t, log, 0, 3, 20)
	const want = "agent tail: --max-record-bytes 4MiB is more than the largest record the destination (--to) takes (1MiB) less 4KiB for the partition key and KPL framing: longer records would be dead-lettered; at most 1020KiB\n"
	for _, args := range [][]string{
		{"tail", "--once", log, "--max-record-bytes", "4MiB"},
		{"tail", "-", "--max-record-bytes", "4MiB"},
	} {
		out, errOut, code := runBin(t, args...)
		require.Equal(t, 2, code, errOut)
		require.Empty(t, out)
		require.Equal(t, want, errOut, args)
	}
}
