package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source/socket"
	"github.com/kplagent/agent/agent/source/stdin"

	"github.com/kplagent/agent/agent"
	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/internal/units"
	"github.com/kplagent/agent/spool"
)

func TestClassifyInputs(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "in.fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	file := filepath.Join(dir, "app.log")
	require.NoError(t, os.WriteFile(file, nil, 0o600))

	in, err := classifyInputs([]string{"-", fifo, file, filepath.Join(dir, "*.log"), file})
	require.NoError(t, err)
	require.True(t, in.stdin)
	require.Equal(t, []string{fifo}, in.fifos)
	require.Equal(t, []string{file, filepath.Join(dir, "*.log")}, in.files, "a path given twice is followed once")
	require.True(t, in.hasStreams())
	require.False(t, in.onlyStreams())

	in, err = classifyInputs([]string{"-"})
	require.NoError(t, err)
	require.True(t, in.onlyStreams())

	_, err = classifyInputs([]string{"-", "-"})
	require.ErrorContains(t, err, "given twice")
}

func TestTailConfig_OrderedDestinationsSendOneRequestAtATimeFromTheSpool(t *testing.T) {
	in := tailInputs{files: []string{"/var/log/app.log"}}
	for _, tc := range []struct {
		to          string
		concurrency int
		ordered     bool
		want        int
	}{
		{to: "-", ordered: true, want: 1},
		{to: "file:///tmp/x", ordered: true, want: 1},
		{to: "http://127.0.0.1:1/x", ordered: false, want: 4},
		{to: "http://127.0.0.1:1/x", concurrency: 1, ordered: true, want: 1},
		{to: "-", concurrency: 3, ordered: true, want: 3},
		{to: "kafka://127.0.0.1:1/logs", ordered: false, want: 3}, // the output's outputs.ConcurrencyAdvisor
		{to: "kafka://127.0.0.1:1/logs", concurrency: 4, ordered: false, want: 4},
	} {
		t.Run(fmt.Sprintf("%s/%d", tc.to, tc.concurrency), func(t *testing.T) {
			_, o := tailFlags(&bytes.Buffer{})
			o.to, o.concurrency, o.stateDir = tc.to, tc.concurrency, t.TempDir()
			cfg, tmp, err := tailConfig(in, o)
			require.NoError(t, err)
			require.False(t, tmp)
			require.NoError(t, cfg.Validate())
			f := cfg.Flows[0]
			require.Equal(t, !tc.ordered, f.SpoolBypass)
			require.Equal(t, tc.want, f.Sender.Concurrency)
		})
	}
}

// A small --spool-max-bytes takes smaller spool files: tail has no flag
// for segment_bytes, whose default (64MiB) would make the cap invalid.
func TestTailConfig_SmallSpoolCapTakesSmallerSegments(t *testing.T) {
	in := tailInputs{files: []string{"/var/log/app.log"}}
	for _, tc := range []struct {
		max     string
		segment units.ByteSize
		err     string
	}{
		{max: "1MiB", segment: 256 << 10},
		{max: "200KiB", segment: 64 << 10},
		{max: "2GiB", segment: 64 << 20},
		{max: "100KiB", segment: 25 << 10}, // was refused: tiny spools take smaller segments still
		{max: "67KiB", segment: 16 << 10},  // entries were left at 16MiB under 68KiB: the spool warned
		{max: "40KiB", segment: 10 << 10},
		{max: "16KiB", segment: 4 << 10},
		{max: "15KiB", err: "--spool-max-bytes: must be at least 16KiB (room for records of 8KiB with their keys and the spool's framing), got 15KiB"},
		{max: "6KiB", err: "--spool-max-bytes: must be at least 16KiB"},
	} {
		t.Run(tc.max, func(t *testing.T) {
			_, o := tailFlags(&bytes.Buffer{})
			o.to, o.spoolMax, o.stateDir = "http://127.0.0.1:1/x", tc.max, t.TempDir()
			cfg, _, err := tailConfig(in, o)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.NoError(t, cfg.Validate())
			require.Equal(t, tc.segment, cfg.Spool.SegmentBytes)
			// The entries fit under the cap (the spool would warn), and
			// the records with their 4KiB of headroom fit the entries.
			cap, err := units.ParseByteSize(tc.max)
			require.NoError(t, err)
			require.LessOrEqual(t, cfg.Spool.MaxEntryBytes, cap-100)
			require.Greater(t, cfg.Spool.MaxEntryBytes, min(cap/2, 16<<20-1), "not lowered more than needed")
			require.LessOrEqual(t, int64(cfg.Spool.MaxEntryBytes), spool.MaxEntryFor(cap), "the spool takes them without a warning")
			largest, _ := cfg.Sources[0].Config.(source.RecordSizer).LargestRecord()
			require.LessOrEqual(t, largest+4<<10, int64(cfg.Spool.MaxEntryBytes))
			require.Less(t, cfg.Flows[0].Aggregation.MaxBytes, cfg.Spool.MaxEntryBytes, "an aggregate fits an entry")
		})
	}
}

func TestTailConfig_StreamsAreStdinSources(t *testing.T) {
	_, o := tailFlags(&bytes.Buffer{})
	o.stateDir = t.TempDir()
	o.maxRecord = "1KiB"
	o.maxRetry = time.Minute
	cfg, _, err := tailConfig(tailInputs{stdin: true, fifos: []string{"/tmp/p"}, files: []string{"/tmp/a.log"}}, o)
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	require.Len(t, cfg.Sources, 3)
	require.Equal(t, "file", cfg.Sources[0].Type)
	require.Equal(t, "stdin", cfg.Sources[1].Type)
	require.Equal(t, "-", cfg.Sources[1].Config.(*stdin.Config).Path)
	require.Equal(t, "/tmp/p", cfg.Sources[2].Config.(*stdin.Config).Path)
	require.EqualValues(t, 1024, cfg.Sources[2].Config.(*stdin.Config).MaxRecordBytes)
	require.Equal(t, []string{"tail", "stdin", "fifo:/tmp/p"}, cfg.Flows[0].Sources)
	require.Equal(t, time.Minute, cfg.Flows[0].Sender.MaxRetryDuration)
}

func TestTailResult_Report(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "a.log")
	require.NoError(t, os.WriteFile(logFile, []byte("x\n"), 0o644))
	for _, tc := range []struct {
		name    string
		r       tailResult
		summary bool
		code    int
		want    []string
		notWant []string
	}{
		{
			name: "interrupted once with records left",
			r:    tailResult{once: true, interrupted: true, err: context.Canceled, stateDir: "/s", snap: agent.Snapshot{RecordsRead: 100, RecordsSent: 40, DeadLettered: 10}},
			code: exitFailed, want: []string{"interrupted: 50 records were not delivered", "they stay in /s"},
		},
		{
			name: "interrupted once with everything delivered",
			r:    tailResult{once: true, interrupted: true, err: context.Canceled, snap: agent.Snapshot{RecordsRead: 100, RecordsSent: 100}},
			code: exitOK, notWant: []string{"interrupted"},
		},
		{
			name: "interrupted once to stdout",
			r:    tailResult{once: true, interrupted: true, tmp: true, snap: agent.Snapshot{RecordsRead: 3}},
			code: exitFailed, want: []string{"3 records were not delivered (they were not printed)"},
		},
		{
			name: "interrupted once in a compressed rotation of unknown size",
			r:    tailResult{once: true, interrupted: true, err: context.Canceled, stateDir: "/s", unread: true, snap: agent.Snapshot{RecordsRead: 100, RecordsSent: 100}},
			code: exitFailed, want: []string{"agent tail: interrupted before the files were read to their end (the next run of the same command reads them from where it stopped)\n"},
		},
		{
			name: "interrupted once with bytes left",
			r:    tailResult{once: true, interrupted: true, err: context.Canceled, stateDir: "/s", behind: 2048, unread: true, snap: agent.Snapshot{RecordsRead: 100, RecordsSent: 100}},
			code: exitFailed, want: []string{"interrupted before the files were read to their end: 2.0 KiB left ("},
		},
		{
			name: "interrupted once with an earlier run's backlog left",
			r:    tailResult{once: true, interrupted: true, err: context.Canceled, stateDir: "/s", hadCheckpoints: true, snap: agent.Snapshot{BacklogEntries: 2}},
			code: exitFailed, want: []string{"interrupted: 2 spool entries were not delivered (they stay in /s"}, notWant: []string{"nothing new"},
		},
		{
			name: "an earlier run's backlog delivered is not nothing to ship",
			r:    tailResult{once: true, stateDir: "/s", hadCheckpoints: true, files: []string{logFile}, snap: agent.Snapshot{RecordsSent: 30}},
			code: exitOK, notWant: []string{"nothing new"},
		},
		{
			name: "nothing new to ship",
			r:    tailResult{once: true, stateDir: "/s", hadCheckpoints: true, files: []string{logFile}},
			code: exitOK, want: []string{"nothing new to ship"},
		},
		{
			name: "interrupted follow mode is a normal end",
			r:    tailResult{interrupted: true, snap: agent.Snapshot{RecordsRead: 3}},
			code: exitOK,
		},
		{
			name: "reader gone is quiet",
			r:    tailResult{once: true, interrupted: true, readerGone: true, tmp: true, snap: agent.Snapshot{RecordsRead: 3}},
			code: exitOK, notWant: []string{"agent tail"},
		},
		{
			name: "reader gone with a state directory tells what stays",
			r:    tailResult{interrupted: true, readerGone: true, stateDir: "/s", snap: agent.Snapshot{RecordsRead: 3}},
			code: exitOK, want: []string{"stdout was closed; 3 records were not printed and stay in /s"},
		},
		{
			name: "summary", summary: true,
			r:    tailResult{once: true, took: 1500 * time.Millisecond, snap: agent.Snapshot{RecordsRead: 1000, BytesRead: 2048, RecordsSent: 998, DeadLettered: 2}},
			code: exitOK, want: []string{"agent tail: 1000 records (2.0 KiB) in 1.5s, 2 dead-lettered\n"},
		},
		{
			name: "dead-lettered",
			r:    tailResult{once: true, err: fmt.Errorf("%w: 2 records (see /s/dead-letter)", agent.ErrDeadLettered)},
			code: exitFailed, want: []string{"dead-letter"},
		},
		{
			name: "runtime failure",
			r:    tailResult{err: errors.New("agent: spool: disk on fire")},
			code: exitFailed, want: []string{"agent tail: spool: disk on fire"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			require.Equal(t, tc.code, tc.r.report(&stderr, tc.summary))
			for _, w := range tc.want {
				require.Contains(t, stderr.String(), w)
			}
			for _, w := range tc.notWant {
				require.NotContains(t, stderr.String(), w)
			}
			if !tc.summary {
				require.NotRegexp(t, `records \(.*\) in .*dead-lettered`, stderr.String())
			}
		})
	}
}

func TestReaderGoneWriter(t *testing.T) {
	for _, discard := range []bool{true, false} {
		r, w, err := os.Pipe()
		require.NoError(t, err)
		gone := 0
		pw := &readerGoneWriter{w: w, discard: discard, gone: func() { gone++ }}
		n, err := pw.Write([]byte("a\n"))
		require.NoError(t, err)
		require.Equal(t, 2, n)
		require.NoError(t, r.Close())
		for range 2 {
			n, err = pw.Write([]byte("b\n"))
			if discard {
				require.NoError(t, err)
				require.Equal(t, 2, n)
			} else {
				require.ErrorIs(t, err, errStdoutClosed)
				require.NotErrorIs(t, err, syscall.EPIPE, "EPIPE would make the stdout output dead-letter the records")
			}
		}
		require.Equal(t, 1, gone)
		require.NoError(t, w.Close())
	}
}

func TestWatchReaderGone_NoticesAClosedPipeWhileIdle(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer w.Close()
	done := make(chan struct{})
	go watchReaderGone(t.Context(), w, func() { close(done) })
	require.NoError(t, r.Close())
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the closed read end was not noticed")
	}
}

func TestReaderWatchable(t *testing.T) {
	devNull, err := os.Stat(os.DevNull)
	require.NoError(t, err)
	require.NotZero(t, devNull.Mode()&fs.ModeCharDevice)
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	pipe, err := w.Stat()
	require.NoError(t, err)
	reg := filepath.Join(t.TempDir(), "out")
	require.NoError(t, os.WriteFile(reg, nil, 0o600))
	regular, err := os.Stat(reg)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		mode fs.FileMode
		goos string
		want bool
	}{
		{"pipe on linux", pipe.Mode(), "linux", true},
		{"pipe on darwin", pipe.Mode(), "darwin", true},
		{"terminal or /dev/null on linux", devNull.Mode(), "linux", true},
		// macOS's poll answers POLLNVAL for devices: watching one would
		// stop agent tail on a terminal at once.
		{"terminal or /dev/null on darwin", devNull.Mode(), "darwin", false},
		{"regular file", regular.Mode(), "linux", false},
		{"regular file on darwin", regular.Mode(), "darwin", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, readerWatchable(tc.mode, tc.goos))
		})
	}
}

func TestCheckReadable(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "a.log")
	require.NoError(t, os.WriteFile(f, []byte("x"), 0o600))
	require.NoError(t, checkReadable(f))
	require.ErrorIs(t, checkReadable(filepath.Join(dir, "missing")), os.ErrNotExist)
	require.ErrorContains(t, checkReadable(dir), "is a directory")
	loop := filepath.Join(dir, "loop")
	require.NoError(t, os.Symlink(loop, loop))
	require.ErrorIs(t, checkReadable(loop), syscall.ELOOP)
	fifo := filepath.Join(dir, "p")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	require.NoError(t, checkReadable(fifo), "a FIFO is checked without opening it")
}

func TestClassifyInputs_SocketURLs(t *testing.T) {
	in, err := classifyInputs([]string{"unix:///run/app.sock", "/var/log/a.log", "tcp://127.0.0.1:5140", "udp://127.0.0.1:5140", "unixgram:///run/d.sock", "file:///var/log/b.log"})
	require.NoError(t, err)
	require.Equal(t, []string{"unix:///run/app.sock", "tcp://127.0.0.1:5140", "udp://127.0.0.1:5140", "unixgram:///run/d.sock"}, in.sockets)
	require.Equal(t, []string{"/var/log/a.log", "/var/log/b.log"}, in.files)
	require.False(t, in.onlyStreams(), "sockets listen until interrupted")

	in, err = classifyInputs([]string{"tcp://127.0.0.1:5140"})
	require.NoError(t, err)
	require.False(t, in.onlyStreams())

	_, err = classifyInputs([]string{"sctp://127.0.0.1:1"})
	require.ErrorContains(t, err, `unknown scheme "sctp"`)
	require.ErrorContains(t, err, "tcp://")
	_, err = classifyInputs([]string{"tcp://127.0.0.1:1", "tcp://127.0.0.1:1"})
	require.ErrorContains(t, err, "given twice")
}

func TestTailConfig_SocketsAreSocketSources(t *testing.T) {
	_, o := tailFlags(&bytes.Buffer{})
	o.stateDir = t.TempDir()
	o.format = "syslog"
	o.maxRecord = "2KiB"
	cfg, _, err := tailConfig(tailInputs{sockets: []string{"unix:///run/app.sock", "tcp://:5140"}}, o)
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	require.Len(t, cfg.Sources, 2)
	for _, s := range cfg.Sources {
		require.Equal(t, "socket", s.Type)
		c := s.Config.(*socket.Config)
		require.Equal(t, socket.FormatSyslog, c.Format)
		require.EqualValues(t, 2048, c.MaxRecordBytes)
	}
	require.Equal(t, "tcp://:5140", cfg.Sources[1].Config.(*socket.Config).Listen)
	require.Equal(t, []string{"unix:///run/app.sock", "tcp://:5140"}, cfg.Flows[0].Sources)

	o.format = "xml"
	_, _, err = tailConfig(tailInputs{sockets: []string{"tcp://:5140"}}, o)
	require.ErrorContains(t, err, "format:")
}

func TestTail_SocketFlagsAreChecked(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Equal(t, exitUsage, run([]string{"tail", "--once", "tcp://127.0.0.1:1"}, bytes.NewReader(nil), &out, &errOut))
	require.Contains(t, errOut.String(), "--once does not apply to sockets")
	errOut.Reset()
	require.Equal(t, exitUsage, run([]string{"tail", "--format", "syslog", "/var/log/x.log"}, bytes.NewReader(nil), &out, &errOut))
	require.Contains(t, errOut.String(), "--format applies to socket inputs")
}

// agent tail -h names every --to scheme this build takes.
func TestTail_HelpNamesEveryDestinationScheme(t *testing.T) {
	t.Parallel()
	out, _, code := runBin(t, "tail", "-h")
	require.Equal(t, 0, code)
	dest := out[strings.Index(out, "Destinations (--to):"):strings.Index(out, "Flags:")]
	for _, scheme := range components().OutputSchemes() {
		if scheme == "-" {
			require.Contains(t, dest, "- or stdout: (standard output")
			continue
		}
		require.Contains(t, dest, scheme+":", "agent tail -h does not name the --to scheme %q", scheme)
	}
}

// agent status and agent top (printStatus) show an output whose first send
// waits as sending, with for how long, and a stalled one with its wait.
func TestPrintStatus_SendingAndStalledOutputs(t *testing.T) {
	now := time.Now()
	st := agent.Status{State: "running", Uptime: "1m0s", Outputs: []agent.OutputStatus{
		{Name: "new", Type: "http", State: agent.OutputSending, SendsInFlight: 1, SendingFor: "2s", SendingForSeconds: 2},
		{Name: "slow", Type: "kafka", State: agent.OutputStalled, SendsInFlight: 2, SendingFor: "14s", SendingForSeconds: 14},
		{Name: "unused", Type: "stdout", State: agent.OutputIdle},
	}}
	var b strings.Builder
	printStatus(&b, st, now)
	require.Regexp(t, `(?m)^new\s+http\s+sending for 2s\s`, b.String())
	require.Regexp(t, `(?m)^slow\s+kafka\s+stalled \(sending for 14s\)\s`, b.String())
	require.Regexp(t, `(?m)^unused\s+stdout\s+idle\s`, b.String())
}

// A flow waiting for its first shard map says so under the flow table,
// with the last error: its output reads idle and its backlog empty.
func TestPrintStatus_FlowWaitingForTheShardMap(t *testing.T) {
	st := agent.Status{State: "running", Uptime: "1m0s", Flows: []agent.FlowStatus{
		{Name: "app", Output: "stream", Primary: "stream", ShardMapWait: &agent.ShardMapWait{For: "40s", ForSeconds: 40, LastError: "kinesis: ListShards late: ResourceNotFoundException"}},
		{Name: "other", Output: "stream", Primary: "stream"},
	}}
	var b strings.Builder
	printStatus(&b, st, time.Now())
	require.Contains(t, b.String(), "flow app: NO SHARD MAP for 40s: records wait unread in the sources; last error: kinesis: ListShards late: ResourceNotFoundException\n")
	require.NotContains(t, b.String(), "flow other:")
}

// The first line says how long the agent has run, and for a state other
// than running not as that state's length: an agent up for an hour that
// began to stop a second ago said "stopping for 1h0m0s".
func TestPrintStatus_StateAndUptime(t *testing.T) {
	for _, tc := range []struct {
		st   agent.Status
		want string
	}{
		{agent.Status{Version: "v", State: "running", Uptime: "1h0m0s", Ready: true}, "agent v, running for 1h0m0s, ready; dead-lettered 0\n"},
		{agent.Status{Version: "v", State: "stopping", Uptime: "1h0m0s", NotReady: "the pipeline is stopping"}, "agent v, stopping (up 1h0m0s), NOT READY: the pipeline is stopping; dead-lettered 0\n"},
		{agent.Status{Version: "v", State: "starting", Uptime: "2s", NotReady: "starting"}, "agent v, starting (up 2s), NOT READY: starting; dead-lettered 0\n"},
		{agent.Status{Version: "v", State: "reloading", Uptime: "1h0m0s", ReloadingFor: "3s", Ready: true}, "agent v, reloading for 3s (up 1h0m0s), ready; dead-lettered 0\n"},
	} {
		var b strings.Builder
		printStatus(&b, tc.st, time.Now())
		require.Equal(t, tc.want, b.String()[:strings.Index(b.String(), "\n")+1])
	}
}

// termStatus: a line written while the status line is shown erases it
// first and draws it again after; a line written in pieces is erased
// before its first piece only, and the status line waits for its end.
func TestTermStatus_LinesClearAndRedrawTheStatusLine(t *testing.T) {
	var b bytes.Buffer
	ts := &termStatus{w: &b}
	_, err := ts.Write([]byte("before any status\n"))
	require.NoError(t, err)
	ts.draw("S1")
	_, err = ts.Write([]byte("level=WARN one\n"))
	require.NoError(t, err)
	_, err = ts.Write([]byte("part "))
	require.NoError(t, err)
	ts.draw("S2") // waits for the end of the line
	_, err = ts.Write([]byte("end\n"))
	require.NoError(t, err)
	ts.clear()
	_, err = ts.Write([]byte("after\n"))
	require.NoError(t, err)
	require.Equal(t, "before any status\n"+
		"\r\033[KS1"+
		"\r\033[Klevel=WARN one\nS1"+
		"\r\033[Kpart end\nS2"+
		"\r\033[K"+
		"after\n", b.String())
}

// TestDeadLetterReplay_TailAfterOtherFlags: --tail after a flag (--state-dir
// DIR --tail PATH --to URL) is the tail form too; it was "flag provided but
// not defined: -tail".
func TestDeadLetterReplay_TailAfterOtherFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	code := cmdDeadLetterReplay([]string{"--state-dir", t.TempDir(), "--tail", "--to", "blackhole:"}, &out, &errOut)
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut.String(), "agent dead-letter replay --tail: the PATH... of the agent tail command is required")
	require.NotContains(t, errOut.String(), "not defined")

	errOut.Reset()
	code = cmdDeadLetterReplay([]string{"-h"}, &out, &errOut)
	require.Equal(t, 0, code)
	require.Contains(t, out.String(), "agent dead-letter replay --tail PATH... --to URL", "the usage shows the tail form")
}

// A replay --tail whose paths or --to are not those of a tail run (a typo)
// said "state directory: stat /home/u/.local/state/agent/tail/<id>: no such
// file or directory"; it now says what names the state directory.
func TestDeadLetterReplay_TailNeverRunSaysWhatNamesTheState(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	logFile := filepath.Join(t.TempDir(), "app.log")
	require.NoError(t, os.WriteFile(logFile, []byte("x\n"), 0o644))
	var out, errOut bytes.Buffer
	code := cmdDeadLetterReplay([]string{"--tail", logFile, "--to", "http://127.0.0.1:1/in"}, &out, &errOut)
	require.Equal(t, exitFailed, code)
	require.Contains(t, errOut.String(), "agent dead-letter replay --tail: no agent tail ran with these paths and this destination (no state in ")
	require.Contains(t, errOut.String(), "give the PATH... and --to of the tail command as it was run")
	require.NotContains(t, errOut.String(), "stat ")
}
