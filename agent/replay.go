package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
)

// ReplayOptions select what ReplayDeadLetters sends and how.
type ReplayOptions struct {
	// Flow, when set, replays only that flow's records; the others stay.
	Flow string
	// Output, when set, sends every replayed record through this output of
	// the config instead of its flow's output.
	Output string
	// RetryFor bounds how long a retryable failure (destination down,
	// 5xx) is retried before the replay stops; what is left stays in the
	// dead-letter files for the next replay. Default 1m.
	RetryFor time.Duration
	// BatchRecords and BatchBytes bound the records of one Send; progress
	// is saved after each. Defaults 500 and 1 MiB.
	BatchRecords int
	BatchBytes   int
}

// ReplayResult counts what a replay did with the records it read.
type ReplayResult struct {
	Delivered int // acknowledged by the destination: gone from the dead-letter files
	Rejected  int // rejected again: back in the dead-letter file with the new reason
	Kept      int // not replayed (a flow the config lacks, an unreadable line): back unchanged
	// OtherFlows are the records of flows ReplayOptions.Flow left out, as
	// asked: back unchanged, and no failure of the replay.
	OtherFlows int
}

// ReplayDeadLetters sends the records of cfg.StateDir's dead-letter files
// again, each through its flow's output as cfg builds it (or opt.Output),
// once the cause of their rejection is fixed.
//
// It works on one file at a time, renamed aside atomically to
// dead-letter.replaying.ndjson, and saves how far it got
// (dead-letter.replaying.offset) after each batch the destination
// acknowledged: a record leaves the dead-letter files only once delivered,
// and a crash or kill mid-replay loses nothing (the next replay resumes
// there; the last batch may be sent twice). Records rejected again, and
// records it does not replay, are appended to the active dead-letter file.
// Only the files present when it starts are replayed, so records rejected
// again wait for the next replay. It may run beside a running agent (the
// dead-letter lock orders their file operations).
func ReplayDeadLetters(ctx context.Context, cfg Config, set Settings, opt ReplayOptions) (ReplayResult, error) {
	var res ReplayResult
	if err := CheckStateDir(cfg.StateDir); err != nil {
		return res, err
	}
	unlock, err := lockReplay(cfg.StateDir)
	if err != nil {
		return res, err
	}
	defer unlock()
	if opt.RetryFor <= 0 {
		opt.RetryFor = time.Minute
	}
	if opt.BatchRecords <= 0 {
		opt.BatchRecords = 500
	}
	if opt.BatchBytes <= 0 {
		opt.BatchBytes = 1 << 20
	}
	if set.Logger == nil {
		set.Logger = slog.New(slog.DiscardHandler)
	}
	r := &replayer{cfg: cfg, set: set, opt: opt, outs: map[string]outputs.Output{}, res: &res,
		dir: cfg.StateDir, snap: filepath.Join(cfg.StateDir, deadLetterReplay), offPath: filepath.Join(cfg.StateDir, deadLetterOffset)}
	r.dlq = openDeadLetter(cfg.StateDir)
	r.dlq.configure(cfg.DeadLetter, nil, set.Logger.With("component", "dead_letter"))
	defer r.dlq.close()
	defer r.closeOutputs()
	if opt.Output != "" && findOutput(cfg, opt.Output) == nil {
		var names []string
		for _, o := range cfg.Outputs {
			names = append(names, o.Name)
		}
		return res, fmt.Errorf("agent: replay: no output named %q in the config (its outputs: %s)", opt.Output, strings.Join(names, ", "))
	}
	if opt.Flow != "" && findFlow(cfg, opt.Flow) == nil {
		var names []string
		for _, f := range cfg.Flows {
			names = append(names, f.Name)
		}
		return res, fmt.Errorf("agent: replay: no flow named %q in the config (its flows: %s)", opt.Flow, strings.Join(names, ", "))
	}

	// The files to replay: those present now.
	var todo []string
	err = r.dlq.locked(func() error {
		rotated, err := rotatedFiles(r.dir)
		if err != nil {
			return err
		}
		todo = append(todo, rotated...)
		if fileExists(filepath.Join(r.dir, DeadLetterFile)) {
			todo = append(todo, DeadLetterFile)
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	for {
		if !fileExists(r.snap) {
			if len(todo) == 0 {
				if res.Delivered > 0 {
					// For agent dead-letter, which would otherwise
					// find no file and could not tell a replayed
					// dead-letter file from none at all.
					if err := writeFileSync(filepath.Join(r.dir, replayLock), fmt.Appendf(nil, "%s %d\n", time.Now().UTC().Format(time.RFC3339), res.Delivered)); err != nil {
						r.set.Logger.Warn("replay: cannot record its end", "error", err)
					}
				}
				return res, nil
			}
			name := todo[0]
			todo = todo[1:]
			if err := r.takeSnapshot(name); err != nil {
				return res, err
			}
			if !fileExists(r.snap) {
				continue // gone meanwhile (rotated by the agent: the next replay)
			}
		}
		if err := r.replayFile(ctx); err != nil {
			return res, err
		}
	}
}

// LastReplay is what the replay lock file of stateDir says of the replays
// that ran there (see ReplayDeadLetters): ran, whether one ran at all; and
// of the last that delivered records and got through every file, when it
// finished and how many it delivered (zero when unknown: none delivered,
// or a replay by an agent that did not record it).
func LastReplay(stateDir string) (ran bool, finished time.Time, delivered int) {
	b, err := os.ReadFile(filepath.Join(stateDir, replayLock))
	if err != nil {
		return false, time.Time{}, 0
	}
	ts, n, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	if !ok {
		return true, time.Time{}, 0
	}
	t, err1 := time.Parse(time.RFC3339, ts)
	d, err2 := strconv.Atoi(n)
	if err1 != nil || err2 != nil || d <= 0 {
		return true, time.Time{}, 0
	}
	return true, t, d
}

// lockReplay makes the replay the only one on dir until unlock: a second
// one would send the file the first renamed aside again (from the offset
// saved last), and remove it under the first.
func lockReplay(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, replayLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent: replay: lock: %w", err)
	}
	held, err := tryFlock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("agent: replay: lock: %w", err)
	}
	if held {
		f.Close()
		return nil, fmt.Errorf("agent: replay: another agent dead-letter replay is running on %s; wait for it to end (it saves its progress: running it again later goes on where it stopped)", dir)
	}
	return func() { funlock(f); f.Close() }, nil
}

type replayer struct {
	cfg           Config
	set           Settings
	opt           ReplayOptions
	dlq           *deadLetter
	outs          map[string]outputs.Output
	res           *ReplayResult
	dir           string
	snap, offPath string
}

// replayOutput builds the named output of cfg the way the agent does: the
// one place replay constructs outputs.
func replayOutput(cfg Config, set Settings, name string) (outputs.Output, error) {
	oc := findOutput(cfg, name)
	if oc == nil {
		return nil, fmt.Errorf("agent: no output named %q", name)
	}
	a, err := New(cfg, set)
	if err != nil {
		return nil, err
	}
	bo, err := a.buildOutput(cfg, *oc)
	if err != nil {
		return nil, err
	}
	return bo.out, nil
}

func findOutput(cfg Config, name string) *OutputConfig {
	for i := range cfg.Outputs {
		if cfg.Outputs[i].Name == name {
			return &cfg.Outputs[i]
		}
	}
	return nil
}

func findFlow(cfg Config, name string) *FlowConfig {
	for i := range cfg.Flows {
		if cfg.Flows[i].Name == name {
			return &cfg.Flows[i]
		}
	}
	return nil
}

func (r *replayer) output(name string) (outputs.Output, error) {
	if o, ok := r.outs[name]; ok {
		return o, nil
	}
	o, err := replayOutput(r.cfg, r.set, name)
	if err != nil {
		return nil, err
	}
	r.outs[name] = o
	return o, nil
}

func (r *replayer) closeOutputs() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, o := range r.outs {
		_ = o.Close(ctx)
	}
}

// takeSnapshot renames dead-letter file name aside as the replay snapshot.
// A stale offset file goes first: it must never apply to a new snapshot.
func (r *replayer) takeSnapshot(name string) error {
	return r.dlq.locked(func() error {
		if err := os.Remove(r.offPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("dead-letter: replay: %w", err)
		}
		if err := syncDir(r.dir); err != nil {
			return err
		}
		err := os.Rename(filepath.Join(r.dir, name), r.snap)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("dead-letter: replay: %w", err)
		}
		return syncDir(r.dir)
	})
}

// replayFile sends the snapshot from its saved offset to its end, then
// removes it.
func (r *replayer) replayFile(ctx context.Context) error {
	off, err := readOffset(r.offPath)
	if err != nil {
		return err
	}
	f, err := os.Open(r.snap)
	if err != nil {
		return fmt.Errorf("dead-letter: replay: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("dead-letter: replay: %w", err)
	}
	br := bufio.NewReaderSize(f, 256<<10)
	for {
		lines, n, err := readLines(br, r.opt.BatchRecords, r.opt.BatchBytes)
		if err != nil {
			return fmt.Errorf("dead-letter: replay: read %s: %w", r.snap, err)
		}
		if len(lines) == 0 {
			break
		}
		if err := r.replayLines(ctx, lines); err != nil {
			return err
		}
		off += int64(n)
		if err := r.saveOffset(off); err != nil {
			return err
		}
	}
	// The snapshot first: an offset file without one is ignored (and
	// removed before the next snapshot is taken).
	return r.dlq.locked(func() error {
		if err := os.Remove(r.snap); err != nil {
			return fmt.Errorf("dead-letter: replay: %w", err)
		}
		if err := os.Remove(r.offPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("dead-letter: replay: %w", err)
		}
		return syncDir(r.dir)
	})
}

// readLines reads up to maxLines lines (or maxBytes, at least one line),
// each with its newline; it returns them and the bytes consumed.
func readLines(br *bufio.Reader, maxLines, maxBytes int) ([][]byte, int, error) {
	var lines [][]byte
	n := 0
	for len(lines) < maxLines && n < maxBytes {
		line, err := br.ReadBytes('\n')
		n += len(line)
		if len(line) > 0 {
			lines = append(lines, line)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, err
		}
	}
	return lines, n, nil
}

func (r *replayer) saveOffset(off int64) error {
	tmp := r.offPath + ".tmp"
	if err := writeFileSync(tmp, []byte(strconv.FormatInt(off, 10)+"\n")); err != nil {
		return fmt.Errorf("dead-letter: replay: %w", err)
	}
	if err := os.Rename(tmp, r.offPath); err != nil {
		return fmt.Errorf("dead-letter: replay: %w", err)
	}
	return syncDir(r.dir)
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// replayItem is one dead-lettered record on its way again.
type replayItem struct {
	rec    DeadLetterRecord
	agg    aggregate.Aggregate
	reason string // set when rejected again
}

// replayLines sends one batch of dead-letter lines and puts back, in one
// synced write, what is not delivered for good.
func (r *replayer) replayLines(ctx context.Context, lines [][]byte) error {
	var back bytes.Buffer
	byOutput := map[string][]*replayItem{}
	var order []string
	for _, line := range lines {
		var rec DeadLetterRecord
		if err := json.Unmarshal(line, &rec); err != nil || !bytes.HasSuffix(line, []byte("\n")) {
			r.keep(&back, line)
			continue
		}
		if r.opt.Flow != "" && rec.Flow != r.opt.Flow {
			r.keep(&back, line)
			r.res.Kept--
			r.res.OtherFlows++
			continue
		}
		outName := r.opt.Output
		if outName == "" {
			fc := findFlow(r.cfg, rec.Flow)
			if fc == nil {
				r.keep(&back, line)
				continue
			}
			outName = fc.Output
		}
		pk := rec.PartitionKey
		if pk == "" {
			pk = "dead-letter" // Kinesis needs one; a record without one had none to keep
		}
		it := &replayItem{rec: rec, agg: aggregate.Aggregate{PartitionKey: pk, ExplicitHashKey: rec.ExplicitHashKey, Body: rec.Data, Count: 1}}
		if _, ok := byOutput[outName]; !ok {
			order = append(order, outName)
		}
		byOutput[outName] = append(byOutput[outName], it)
	}
	for _, name := range order {
		o, err := r.output(name)
		if err != nil {
			return err
		}
		items := byOutput[name]
		if err := r.send(ctx, o, items); err != nil {
			return err
		}
		enc := json.NewEncoder(&back)
		for _, it := range items {
			if it.reason == "" {
				r.res.Delivered++
				continue
			}
			r.res.Rejected++
			rec := it.rec
			rec.Time, rec.Output, rec.Reason, rec.Text = time.Now().UTC(), name, "replay: "+it.reason, nil
			if err := enc.Encode(r.dlq.prepare(rec)); err != nil {
				return fmt.Errorf("dead-letter: replay: %w", err)
			}
		}
	}
	if back.Len() == 0 {
		return nil
	}
	_, err := r.dlq.appendLines(back.Bytes(), true)
	return err
}

func (r *replayer) keep(back *bytes.Buffer, line []byte) {
	r.res.Kept++
	back.Write(line)
	if !bytes.HasSuffix(line, []byte("\n")) {
		back.WriteByte('\n')
	}
}

// send delivers items through o, retrying retryable failures with backoff
// for up to RetryFor; items rejected for good get their reason.
func (r *replayer) send(ctx context.Context, o outputs.Output, items []*replayItem) error {
	pending := items
	deadline := time.Now().Add(r.opt.RetryFor)
	b := outputs.Batch{}
	for attempt := 0; len(pending) > 0; attempt++ {
		b.Records = b.Records[:0]
		for _, it := range pending {
			b.Records = append(b.Records, it.agg)
		}
		err := o.Send(ctx, b)
		var re *outputs.RejectedRecordsError
		if errors.As(err, &re) {
			for _, rj := range re.Rejected {
				if rj.Record >= 0 && rj.Record < len(pending) {
					pending[rj.Record].reason = rj.Reason
				}
			}
			err = re.Err
		}
		var pe *outputs.PartialError
		if errors.As(err, &pe) && !validPartial(pe, len(pending)) {
			// It cannot say what was delivered: none of it was (as in
			// the sender's deliver).
			err, pe = fmt.Errorf("%w (invalid partial failure)", pe.Err), nil
		}
		switch {
		case err == nil:
			return nil
		case pe != nil:
			var failed []*replayItem
			for k, j := range pe.Failed {
				if j < 0 || j >= len(pending) {
					continue
				}
				if outputs.IsPermanent(pe.Err) {
					reason := pe.Err.Error()
					if k < len(pe.Reasons) && pe.Reasons[k] != "" {
						reason = pe.Reasons[k]
					}
					pending[j].reason = "rejected: " + reason
					continue
				}
				failed = append(failed, pending[j])
			}
			pending = failed
		case outputs.IsPermanent(err):
			for _, it := range pending {
				it.reason = "rejected: " + err.Error()
			}
			return nil
		}
		if len(pending) == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent: replay: output %s still failing after %s (the rest stays in the dead-letter files): %w", o.Name(), r.opt.RetryFor, err)
		}
		delay := time.Duration(rand.Int64N(int64(min(100*time.Millisecond<<min(attempt, 10), 5*time.Second)) + 1))
		var te *outputs.ThrottleError
		if errors.As(err, &te) {
			delay = max(delay, te.Delay)
		}
		r.set.Logger.Warn("replay: send failed; retrying", "output", o.Name(), "records", len(pending), "retry_in", delay.Round(time.Millisecond), "error", err)
		if !sleepCtx(ctx, delay) {
			return ctx.Err()
		}
	}
	return nil
}
