package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/spool"
)

// scripted is an output whose every Send answers with the next function of
// its script (the last one repeats); it records what it delivered.
type scripted struct {
	name    string
	mu      sync.Mutex
	script  []func(b outputs.Batch) error
	calls   int
	times   []time.Time
	got     map[string]int // entry body -> deliveries
	records int            // user records delivered
}

func newScripted(name string, script ...func(b outputs.Batch) error) *scripted {
	return &scripted{name: name, script: script, got: map[string]int{}}
}

func (s *scripted) Name() string                { return s.name }
func (s *scripted) Close(context.Context) error { return nil }
func (s *scripted) Send(_ context.Context, b outputs.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.script[min(s.calls, len(s.script)-1)]
	s.calls++
	s.times = append(s.times, time.Now())
	err := f(b)
	failed := map[int]bool{}
	var pe *outputs.PartialError
	if errors.As(err, &pe) {
		for _, i := range pe.Failed {
			failed[i] = true
		}
	} else if err != nil {
		return err
	}
	for i := range b.Records {
		if !failed[i] {
			s.got[string(b.Records[i].Body)]++
			s.records += b.Records[i].Count
		}
	}
	return err
}

func ok(outputs.Batch) error { return nil }

func (s *scripted) delivered() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.got {
		out[k] = v
	}
	return out
}

type senderRig struct {
	t     *testing.T
	dir   string
	spool *spool.Spool
	s     *sender
	dlq   *deadLetter
}

func newSenderRig(t *testing.T, primary, failover outputs.Output, tune func(*SenderConfig)) *senderRig {
	t.Helper()
	dir := t.TempDir()
	sp := openTestSpool(t, dir, nil)
	cfg := DefaultFlowConfig().Sender
	cfg.BackoffInitial = time.Millisecond
	cfg.BackoffMax = 5 * time.Millisecond
	cfg.Concurrency = 1
	cfg.BatchMaxRecords = 10
	if tune != nil {
		tune(&cfg)
	}
	m := newMetrics()
	dlq := openDeadLetter(dir)
	t.Cleanup(func() { _ = dlq.close() })
	s := &sender{flow: "f", cfg: cfg, spool: sp, dlq: dlq, log: slog.New(slog.DiscardHandler), metrics: m.sender("f"),
		primary: &outputState{out: primary, metrics: m.output(primary.Name())}}
	if failover != nil {
		s.failover = &outputState{out: failover, metrics: m.output(failover.Name())}
	}
	return &senderRig{t: t, dir: dir, spool: sp, s: s, dlq: dlq}
}

// appendRecords spools n plain records "r0".."r<n-1>".
func (r *senderRig) appendRecords(n int) {
	for i := range n {
		a := aggregate.Aggregate{PartitionKey: "k", Body: fmt.Appendf(nil, "r%d", i), Count: 1}
		_, err := r.spool.Append(r.t.Context(), a.AppendEntry(nil))
		require.NoError(r.t, err)
	}
}

// runUntilDrained runs the sender until the spool holds no unacked entry.
func (r *senderRig) runUntilDrained() {
	ctx, cancel := context.WithCancel(r.t.Context())
	done := make(chan error, 1)
	go func() { done <- r.s.run(ctx) }()
	require.Eventually(r.t, func() bool { return r.spool.Stats().Entries == 0 }, 20*time.Second, 2*time.Millisecond)
	cancel()
	require.NoError(r.t, <-done)
}

func (r *senderRig) deadLettered() []DeadLetterRecord {
	f, err := os.Open(filepath.Join(r.dir, DeadLetterFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(r.t, err)
	defer f.Close()
	var out []DeadLetterRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var d DeadLetterRecord
		require.NoError(r.t, json.Unmarshal(sc.Bytes(), &d))
		out = append(out, d)
	}
	return out
}

func TestSender_PartialFailureRetriesOnlyTheFailedRecords(t *testing.T) {
	out := newScripted("o",
		func(b outputs.Batch) error {
			return &outputs.PartialError{Failed: []int{1, 3}, Err: errors.New("throughput exceeded")}
		},
		ok)
	r := newSenderRig(t, out, nil, nil)
	r.appendRecords(5)
	r.runUntilDrained()
	got := out.delivered()
	require.Len(t, got, 5)
	for k, v := range got {
		require.Equal(t, 1, v, "record %s delivered %d times", k, v)
	}
	require.Empty(t, r.deadLettered())
}

func TestSender_PermanentErrorGoesToDeadLetterWithReason(t *testing.T) {
	out := newScripted("o", func(outputs.Batch) error { return outputs.Permanent(errors.New("400 Bad Request: schema mismatch")) })
	r := newSenderRig(t, out, nil, nil)
	r.appendRecords(3)
	r.runUntilDrained()
	dl := r.deadLettered()
	require.Len(t, dl, 3)
	for _, d := range dl {
		require.Contains(t, d.Reason, "schema mismatch")
		require.Equal(t, "o", d.Output)
		require.NotNil(t, d.Text)
	}
	require.Equal(t, 1, out.calls, "a permanent error is never retried")
}

func TestSender_PartialPermanentDeadLettersOnlyFailedAndAcksTheRest(t *testing.T) {
	out := newScripted("o", func(outputs.Batch) error {
		return &outputs.PartialError{Failed: []int{0}, Reasons: []string{"record rejected: too big"}, Err: outputs.Permanent(errors.New("rejected"))}
	})
	r := newSenderRig(t, out, nil, nil)
	r.appendRecords(2)
	r.runUntilDrained()
	dl := r.deadLettered()
	require.Len(t, dl, 1)
	require.Equal(t, "r0", *dl[0].Text)
	require.Contains(t, dl[0].Reason, "too big")
	require.Equal(t, map[string]int{"r1": 1}, out.delivered())
}

func TestSender_ThrottleDelayIsHonoured(t *testing.T) {
	const delay = 150 * time.Millisecond
	out := newScripted("o", func(outputs.Batch) error { return outputs.Throttle(errors.New("429"), delay) }, ok)
	r := newSenderRig(t, out, nil, nil)
	r.appendRecords(1)
	r.runUntilDrained()
	require.Len(t, out.times, 2)
	require.GreaterOrEqual(t, out.times[1].Sub(out.times[0]), delay)
}

func TestSender_RetriesForeverByDefaultThenDelivers(t *testing.T) {
	fail := func(outputs.Batch) error { return errors.New("connection refused") }
	out := newScripted("o", fail, fail, fail, fail, fail, fail, fail, fail, ok)
	r := newSenderRig(t, out, nil, nil)
	r.appendRecords(2)
	r.runUntilDrained()
	require.Equal(t, map[string]int{"r0": 1, "r1": 1}, out.delivered())
	require.Empty(t, r.deadLettered())
}

func TestSender_MaxRetryDurationDeadLetters(t *testing.T) {
	out := newScripted("o", func(outputs.Batch) error { return errors.New("503 Service Unavailable") })
	r := newSenderRig(t, out, nil, func(c *SenderConfig) { c.MaxRetryDuration = 50 * time.Millisecond })
	r.appendRecords(2)
	r.runUntilDrained()
	dl := r.deadLettered()
	require.Len(t, dl, 2)
	require.Contains(t, dl[0].Reason, "retries_exhausted")
	require.Contains(t, dl[0].Reason, "503")
}

func TestSender_FailoverAfterConsecutiveFailuresAndFailback(t *testing.T) {
	down := true
	var mu sync.Mutex
	primary := newScripted("primary", func(outputs.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return errors.New("connection refused")
		}
		return nil
	})
	backup := newScripted("backup", ok)
	r := newSenderRig(t, primary, backup, func(c *SenderConfig) {
		c.FailoverAfter = 2
		c.FailbackAfter = time.Hour
		c.BatchMaxRecords = 1
	})
	r.appendRecords(3)
	r.runUntilDrained()
	require.Len(t, backup.delivered(), 3, "the failover output took the records while the primary was down")
	require.Equal(t, 2, primary.calls, "failover after failover_after consecutive failures")

	mu.Lock()
	down = false
	mu.Unlock()
	r.s.cfg.FailbackAfter = time.Millisecond // (the sender is stopped between runs)
	r.appendRecords(1)
	r.runUntilDrained()
	require.Equal(t, 1, primary.delivered()["r0"], "the primary is tried again after failback_after")
}

func TestSender_UndecodableSpoolEntryIsDeadLetteredNotSent(t *testing.T) {
	out := newScripted("o", ok)
	r := newSenderRig(t, out, nil, nil)
	_, err := r.spool.Append(t.Context(), []byte{0xff, 0x00, 0x01})
	require.NoError(t, err)
	r.appendRecords(1)
	r.runUntilDrained()
	require.Equal(t, map[string]int{"r0": 1}, out.delivered())
	dl := r.deadLettered()
	require.Len(t, dl, 1)
	require.Contains(t, dl[0].Reason, "undecodable_spool_entry")
}

// Records dead-lettered were logged nowhere: `agent run` with a stdout
// output piped to `head -1` dead-lettered everything after the first line,
// and the journal showed only "stopped; everything read was delivered".
// An ERROR line says it (README: ERROR is for lost or dead-lettered data),
// at most once a minute with the count since the last line.
func TestSender_DeadLetteringIsLoggedAtErrorRateLimited(t *testing.T) {
	out := newScripted("o", func(outputs.Batch) error { return outputs.Permanent(errors.New("400 Bad Request: schema mismatch")) })
	r := newSenderRig(t, out, nil, nil)
	var buf syncBuf
	r.s.log = slog.New(slog.NewTextHandler(&buf, nil))
	r.appendRecords(3)
	r.runUntilDrained()
	require.Len(t, r.deadLettered(), 3)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var dl []string
	for _, l := range lines {
		if strings.Contains(l, "records dead-lettered") {
			dl = append(dl, l)
		}
	}
	require.Len(t, dl, 1, buf.String())
	require.Contains(t, dl[0], "level=ERROR")
	require.Contains(t, dl[0], "output=o")
	require.Regexp(t, `records=[1-3] `, dl[0])
	require.Contains(t, dl[0], "schema mismatch")

	r.appendRecords(3)
	r.runUntilDrained()
	require.Len(t, r.deadLettered(), 6)
	require.Equal(t, 1, strings.Count(buf.String(), "records dead-lettered"), "at most one line a minute")
}
