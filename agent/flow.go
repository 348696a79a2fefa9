package agent

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kplagent/agent/agent/process"
	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/agent/source/file"
	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/spool"
)

// flow is the aggregation stage of one flow: records from its sources are
// packed into KPL aggregates, appended to the flow's spool, and tracked
// until durable so the sources' checkpoints can advance.
type flow struct {
	name    string
	cfg     FlowConfig
	log     *slog.Logger
	spool   *spool.Spool
	dlq     *deadLetter
	metrics *flowMetrics
	proc    *process.Stage // processors, envelope and key policies
	active  bool           // proc changes records
	random  bool           // random partition keys are used (the policy or its fallback)
	lines   bool           // aggregates in the newline framing (writeLines)

	// tmu guards the tracker alone, so checkpoints keep moving while mu is
	// held by an Append blocked on a full spool. Order: mu, then tmu.
	tmu     sync.Mutex
	tracker *tracker
	run     trackRun // guarded by mu (applied under tmu)

	// spoolWait bounds an Append of a full direct queue's aggregate
	// (directFullSpoolWait; tests shorten it to model a slow full disk).
	spoolWait time.Duration

	mu        sync.Mutex // guards everything below; held across spool.Append (backpressure)
	builder   *aggregate.Builder
	memCloses int // builder.ClosedForMemory() already counted in the metrics
	entry     []byte
	pk        []byte
	rng       *rand.PCG
	randomPK  string          // partition_key random: the key of the aggregate being filled
	rekeyed   bool            // the record being added took the next random key already
	clock     atomic.Int64    // coarse now (unix nanos), advanced by runTimers
	direct    *directQueue    // nil: every aggregate goes through the spool
	directOK  atomic.Bool     // the direct path is open (closed during shutdown)
	appendTo  context.Context // the context of the Append in progress (emit's or shutdown's)
	appendErr error

	// The destination's shard map (Kinesis), when its output has one:
	// records are grouped per predicted shard, so that every sub-record of
	// an aggregate lies in the range of the shard the aggregate lands on.
	aggCfg      aggregate.Config
	shards      outputs.ShardMapper     // nil: one range for every hash key
	watcher     outputs.ShardMapWatcher // nil: the map never changes
	mapReady    bool                    // builder was built against shards' map
	mapVersion  uint64                  // the version of that map
	mapChanged  <-chan struct{}         // closed when the output's map changes after it
	mapWarnedAt time.Time               // of the last warning of a failed fetch
	// mapWait is set while an emit retries the first shard map fetch,
	// holding mu: the timers cannot tick meanwhile, and are not stuck.
	mapWait atomic.Bool
	// While it does: since when (unix nanos), and the last fetch's error,
	// for the status (the records wait unread, the output is not failing).
	mapWaitSince atomic.Int64
	mapWaitErr   atomic.Pointer[string]
}

// shardMapWait returns since when the flow has waited for its first shard
// map and the last fetch's error; ok is false when it does not wait.
func (f *flow) shardMapWait() (since time.Time, lastErr string, ok bool) {
	if f == nil { // a flow runtime being built
		return time.Time{}, "", false
	}
	ns := f.mapWaitSince.Load()
	if ns == 0 {
		return time.Time{}, "", false
	}
	if e := f.mapWaitErr.Load(); e != nil {
		lastErr = *e
	}
	return time.Unix(0, ns), lastErr, true
}

var crc32c = crc32.MakeTable(crc32.Castagnoli)

func newFlow(name string, cfg FlowConfig, sp *spool.Spool, dlq *deadLetter, m *flowMetrics, log *slog.Logger) (*flow, error) {
	// Non-Kinesis destinations have no shards: one range covering every hash
	// key lets records of all partition keys share aggregates.
	shards, err := aggregate.NewShardMap([]aggregate.Shard{{ID: "all", Start: aggregate.HashKey{}, End: aggregate.MaxHashKey}})
	if err != nil {
		return nil, fmt.Errorf("flow %s: %w", name, err)
	}
	aggCfg := aggregate.Config{
		MaxBytes:        int(cfg.Aggregation.MaxBytes),
		MaxRecords:      cfg.Aggregation.MaxRecords,
		RecordLimit:     cfg.recordLimit, // 0: the Kinesis default
		MaxPendingBytes: int(cfg.Aggregation.MaxPendingBytes),
	}
	b, err := aggregate.NewBuilder(aggCfg, shards)
	if err != nil {
		return nil, fmt.Errorf("flow %s: %w", name, err)
	}
	seed := rand.Uint64()
	f := &flow{
		name: name, cfg: cfg, log: log, spool: sp, dlq: dlq, metrics: m,
		builder: b, tracker: newTracker(), aggCfg: aggCfg,
		rng:       rand.NewPCG(seed, seed^0x9e3779b97f4a7c15),
		spoolWait: directFullSpoolWait,
	}
	var reg prometheus.Registerer
	if m != nil && m.m != nil {
		reg = m.m.reg
	}
	if f.proc, err = process.New(cfg.processConfig(), process.Settings{Flow: name, Logger: log, Registerer: reg}); err != nil {
		return nil, fmt.Errorf("flow %s: %w", name, err)
	}
	f.active = f.proc.Active()
	switch cfg.PartitionKey.Kind {
	case PartitionKeyRandom, "":
		f.random = true
	case PartitionKeyDeterministic, process.KeyFixed:
	default:
		f.random = f.proc.KeyFallback() == PartitionKeyRandom
	}
	if f.random {
		f.nextRandomPK()
	}
	f.clock.Store(time.Now().UnixNano())
	return f, nil
}

// useShardMap makes the flow aggregate against the shard map of sm (its
// output's), fetched before the first record is aggregated. Call it before
// the flow takes records.
func (f *flow) useShardMap(sm outputs.ShardMapper) {
	f.shards = sm
	f.watcher, _ = sm.(outputs.ShardMapWatcher)
}

// writeLines makes the flow build its aggregates in the newline framing
// (aggregate.FramingLines): its outputs all write user records one by one
// (outputs.RecordWriter). Call it before the flow takes records, and not
// with a shard map (Kinesis needs KPL).
func (f *flow) writeLines() error {
	cfg := f.aggCfg
	cfg.Framing = aggregate.FramingLines
	shards, err := aggregate.NewShardMap([]aggregate.Shard{{ID: "all", Start: aggregate.HashKey{}, End: aggregate.MaxHashKey}})
	if err != nil {
		return fmt.Errorf("flow %s: %w", f.name, err)
	}
	b, err := aggregate.NewBuilder(cfg, shards)
	if err != nil {
		return fmt.Errorf("flow %s: %w", f.name, err)
	}
	f.aggCfg, f.builder, f.memCloses, f.lines = cfg, b, 0, true
	return nil
}

// Fetching the first shard map is retried with the sender's backoff; its
// failures are logged at most every shardMapWarnEvery.
const shardMapWarnEvery = 30 * time.Second

// checkShardMapLocked makes sure the builder is built against the output's
// current shard map: it fetches the first one (retrying until it comes or
// ctx ends), and rebuilds the builder when the map changed. Cheap when
// nothing changed (a receive from a channel). Called under f.mu.
func (f *flow) checkShardMapLocked(ctx context.Context) error {
	if f.mapReady {
		if f.mapChanged == nil {
			return nil
		}
		select {
		case <-f.mapChanged:
		default:
			return nil
		}
	}
	return f.loadShardMapLocked(ctx)
}

// loadShardMapLocked gets the output's current shard map and, when it is not
// the one the builder was built against, flushes the builder's open
// aggregates (as at an age flush) and builds a new builder against it.
func (f *flow) loadShardMapLocked(ctx context.Context) error {
	var m *aggregate.ShardMap
	backoff := f.cfg.Sender.BackoffInitial
	start := time.Now()
	for attempt := 1; ; attempt++ {
		var err error
		m, err = f.shards.ShardMap(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("flow %s: shard map: %w", f.name, context.Cause(ctx))
		}
		if f.mapReady {
			// The map in use stays (the output keeps its last good one).
			f.warnShardMap("fetching the changed shard map failed; aggregating against the current one", attempt, err)
			return nil
		}
		if d := f.cfg.Sender.MaxRetryDuration; d > 0 && time.Since(start) >= d {
			return f.noShardMapLocked(err)
		}
		f.warnShardMap("fetching the shard map failed; records wait (unread) until it comes", attempt, err)
		msg := err.Error()
		f.mapWaitErr.Store(&msg)
		if attempt == 1 {
			f.mapWait.Store(true)
			f.mapWaitSince.Store(start.UnixNano())
			defer func() {
				f.mapWait.Store(false)
				f.mapWaitSince.Store(0)
				f.mapWaitErr.Store(nil)
			}()
		}
		if !sleepCtx(ctx, backoff) {
			return fmt.Errorf("flow %s: shard map: %w", f.name, context.Cause(ctx))
		}
		backoff = min(2*backoff, f.cfg.Sender.BackoffMax)
	}
	var version uint64
	var changed <-chan struct{}
	if f.watcher != nil {
		// The channel before the version, the version before the map: a
		// change in between closes the channel, and the next check takes
		// the newer map.
		changed = f.watcher.ShardMapChanged()
		version = f.watcher.ShardMapVersion()
		var err error
		if m, err = f.shards.ShardMap(ctx); err != nil {
			return fmt.Errorf("flow %s: shard map: %w", f.name, err)
		}
	}
	if f.mapReady && version == f.mapVersion {
		f.mapChanged = changed
		return nil
	}
	b, err := aggregate.NewBuilder(f.aggCfg, m)
	if err != nil {
		return fmt.Errorf("flow %s: shard map: %w", f.name, err)
	}
	// The open aggregates were built against the old map: they go out
	// first (the output splits those that straddle the new shards). Once
	// flushed, no record is tracked in a group of the old builder, whose
	// indexes the new builder's groups reuse.
	if n, _ := f.builder.Pending(); n > 0 {
		f.appendTo = ctx
		f.appendErr = nil
		if err := f.builder.FlushAll(f.onAggregate); err != nil {
			return err
		}
	}
	var rerr error
	f.trackLocked(func(t *tracker) { rerr = t.regroup(b.Groups()) })
	if rerr != nil {
		return fmt.Errorf("flow %s: shard map change: %w", f.name, rerr)
	}
	if f.mapReady {
		f.log.Info("shard map changed: aggregating per shard of the new map", "shards", m.Len(), "version", version)
	} else {
		f.log.Info("aggregating per shard", "shards", m.Len(), "version", version)
	}
	f.builder, f.memCloses = b, 0
	f.mapReady, f.mapVersion, f.mapChanged = true, version, changed
	return nil
}

// noShardMapLocked gives up waiting for the first shard map, after the
// flow's max_retry_duration: the flow aggregates without one (its first
// builder, one range for every hash key, as for outputs that have no map;
// nothing was added to it yet), so that the records reach the sender,
// whose sends fail while the output has no map and which dead-letters them
// after max_retry_duration, as it does for any destination that keeps
// failing. Without it the records waited unread forever, and a run with
// Once (agent tail --once --max-retry-duration) never ended. The map, once
// it comes, is taken as a changed map (the output splits the aggregates
// built without it).
func (f *flow) noShardMapLocked(err error) error {
	var changed <-chan struct{}
	var version uint64
	if f.watcher != nil {
		changed = f.watcher.ShardMapChanged()
		version = f.watcher.ShardMapVersion()
	}
	f.log.Error("no shard map within max_retry_duration: aggregating without one; the sends fail until it comes and the records are dead-lettered after max_retry_duration",
		"max_retry_duration", f.cfg.Sender.MaxRetryDuration.String(), "error", err)
	f.mapReady, f.mapVersion, f.mapChanged = true, version, changed
	return nil
}

// warnShardMap logs a failed shard map fetch, at most every
// shardMapWarnEvery.
func (f *flow) warnShardMap(msg string, attempt int, err error) {
	now := time.Now()
	if !f.mapWarnedAt.IsZero() && now.Sub(f.mapWarnedAt) < shardMapWarnEvery {
		return
	}
	f.mapWarnedAt = now
	f.log.Warn(msg, "attempt", attempt, "error", err)
}

// nextRandomPK draws the random partition key for the next aggregate.
//
// partition_key: random gives each aggregate one random 64-bit key shared
// by its records, like Kafka's sticky partitioner: aggregates spread evenly
// over a stream's shards (or a topic's partitions), while a record costs no
// key of its own (no allocation, no key-table entry, 20 fewer bytes on the
// wire). The key changes whenever an aggregate is emitted.
func (f *flow) nextRandomPK() {
	var raw [8]byte
	binary.BigEndian.PutUint64(raw[:], f.rng.Uint64())
	f.randomPK = hex.EncodeToString(raw[:])
}

// now is a coarse clock (within the flush tick, a few ms) for stamping when
// aggregates open and files were last touched: reading the real clock per
// record costs more than the rest of the tracking.
func (f *flow) now() time.Time { return time.Unix(0, f.clock.Load()) }

// emitFor returns the emit function for one source of the flow.
func (f *flow) emitFor(src string, committer source.Committer, sm *sourceMetrics) source.Emit {
	sm.attach(&f.tmu) // counted with each record's tracking, under one lock
	return func(ctx context.Context, r source.Record) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.addLocked(ctx, src, committer, sm, r, nil)
	}
}

// emitBatchFor is emitFor's batch form: the flow's lock is taken once per
// batch and, for a source that does not checkpoint (a socket: nothing to
// track per record but its counts), the tracker's lock once too.
func (f *flow) emitBatchFor(src string, committer source.Committer, sm *sourceMetrics) source.EmitBatch {
	sm.attach(&f.tmu)
	return func(ctx context.Context, rs []source.Record) (int, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		var counts *batchCounts
		if committer == nil {
			counts = &batchCounts{}
			defer func() {
				f.track(func(*tracker) {
					sm.records += counts.records
					sm.bytes += counts.bytes
				})
			}()
		}
		for i := range rs {
			if err := f.addLocked(ctx, src, committer, sm, rs[i], counts); err != nil {
				return i, err
			}
		}
		return len(rs), nil
	}
}

// batchCounts are a batch's source counts, added to the source's metrics
// once at the batch's end.
type batchCounts struct{ records, bytes uint64 }

// addLocked adds one record. With counts (a source that does not
// checkpoint, whose tracking is only its counts), the record is counted
// there instead of under the tracker's lock.
func (f *flow) addLocked(ctx context.Context, src string, committer source.Committer, sm *sourceMetrics, r source.Record, counts *batchCounts) error {
	if f.shards != nil {
		if err := f.checkShardMapLocked(ctx); err != nil {
			return err
		}
	}
	now := f.now()
	data := r.Data
	if f.active {
		var keep bool
		if data, keep = f.proc.Process(r.Data, process.Meta{Source: src, Path: r.Path, Offset: r.Cursor.Start}); !keep {
			// A drop or keep rule removed it: counted, and its offset
			// may pass.
			f.metrics.dropped("filtered").Inc()
			n := uint64(len(r.Data))
			if counts != nil {
				counts.records++
				counts.bytes += n
				return nil
			}
			f.trackLocked(func(t *tracker) {
				t.add(src, committer, r.Cursor, -1, now)
				sm.records++
				sm.bytes += n
			})
			return nil
		}
	}
	// JSONObject: the processing stage made the record a JSON object, so
	// outputs writing JSON need not check it again.
	rec := aggregate.Record{Data: data, PartitionKey: r.PartitionKey, ExplicitHashKey: r.ExplicitHashKey, JSONObject: f.active && f.proc.Object()}
	if rec.PartitionKey == "" {
		rec.PartitionKey = f.partitionKey(data)
		if f.lines && rec.PartitionKey == f.randomPK && f.builder.Closes(rec) {
			// The record opens the next aggregate: it takes the next
			// key, so that the aggregate has one key (and stays in the
			// newline framing) rather than this record's and the next.
			f.nextRandomPK()
			rec.PartitionKey = f.randomPK
			f.rekeyed = true
		}
	}
	if rec.ExplicitHashKey == "" && f.cfg.ExplicitHashKey.Field != "" {
		rec.ExplicitHashKey = f.proc.ExplicitHashKey(data)
	}
	f.appendTo = ctx
	f.appendErr = nil
	group, err := f.builder.Add(rec, now, f.onAggregate)
	f.rekeyed = false
	if n := f.builder.ClosedForMemory(); n != f.memCloses {
		f.metrics.closedForMemory.Add(float64(n - f.memCloses))
		f.memCloses = n
	}
	if err != nil {
		if f.appendErr != nil {
			// The spool did not take a closed aggregate (shutdown while
			// blocked on a full spool). Its records were never committed:
			// the file source re-reads them after a restart.
			return f.appendErr
		}
		// The record itself is unacceptable (too large, bad key): it goes
		// to the dead-letter file, durably, before its offset may pass.
		if derr := f.dlq.writeRecord(f.name, "", reasonOf(err), rec.PartitionKey, rec.ExplicitHashKey, data); derr != nil {
			return fmt.Errorf("flow %s: dead-letter a rejected record: %w", f.name, derr)
		}
		f.metrics.dropped("rejected").Inc()
		group = -1
	}
	n := uint64(len(r.Data))
	if counts != nil {
		counts.records++
		counts.bytes += n
		return nil
	}
	if rn := &f.run; rn.ok && group >= 0 && rn.group == group && rn.src == src && rn.sm == sm && rn.fileID == r.Cursor.FileID && rn.records < maxTrackRun {
		// The aggregate's start in this file is pinned already: only the
		// file's end and the counters move, applied in a batch.
		rn.end = max(rn.end, r.Cursor.Offset)
		rn.touched = now
		rn.records++
		rn.bytes += n
		return nil
	}
	f.trackLocked(func(t *tracker) {
		t.add(src, committer, r.Cursor, group, now)
		sm.records++
		sm.bytes += n
	})
	if group >= 0 && committer != nil && r.Cursor.FileID != "" {
		f.run = trackRun{ok: true, src: src, committer: committer, sm: sm, fileID: r.Cursor.FileID, group: group}
	}
	return nil
}

// trackRun is a run of records of one file added to one open aggregate
// after the first (which pinned the aggregate's start in the file in the
// tracker): they only move the file's end, its last touch and the source's
// counters. Taking the tracker's lock for each cost more than the rest of
// the tracking; the run is applied at the next trackLocked (before the
// aggregate closes, since closing goes through it) or every maxTrackRun
// records. Until then the tracker knows a smaller end for the file, which
// can only hold its checkpoint back (the open aggregate holds it anyway).
type trackRun struct {
	ok             bool
	src            string
	committer      source.Committer
	sm             *sourceMetrics
	fileID         string
	group          int
	end            int64
	touched        time.Time
	records, bytes uint64
}

// maxTrackRun bounds how many records' counters a run holds back.
const maxTrackRun = 256

// trackLocked is track for callers holding f.mu: the run of records not yet
// applied to the tracker is applied first, and ends.
func (f *flow) trackLocked(fn func(*tracker)) {
	f.tmu.Lock()
	if rn := &f.run; rn.ok {
		if rn.records > 0 {
			f.tracker.add(rn.src, rn.committer, source.Cursor{FileID: rn.fileID, Offset: rn.end}, rn.group, rn.touched)
			rn.sm.records += rn.records
			rn.sm.bytes += rn.bytes
		}
		*rn = trackRun{}
	}
	fn(f.tracker)
	f.tmu.Unlock()
}

func reasonOf(err error) string {
	switch {
	case errors.Is(err, aggregate.ErrRecordTooLarge):
		return "record_too_large: " + err.Error()
	case errors.Is(err, aggregate.ErrPartitionKey):
		return "bad_partition_key: " + err.Error()
	case errors.Is(err, aggregate.ErrExplicitHashKey):
		return "bad_explicit_hash_key: " + err.Error()
	}
	return err.Error()
}

// partitionKey makes a key for a record without one.
func (f *flow) partitionKey(data []byte) string {
	kind := f.cfg.PartitionKey.Kind
	switch kind {
	case PartitionKeyRandom, "":
		return f.randomPK
	case PartitionKeyDeterministic:
	default:
		// field, regex, fixed, hostname: from the record, else the
		// fallback (the record is never dropped for want of a key).
		if k, ok := f.proc.PartitionKey(data); ok {
			return k
		}
		if f.proc.KeyFallback() == PartitionKeyRandom {
			return f.randomPK
		}
	}
	// deterministic: two independent 32-bit CRCs of the data (both are
	// hardware-accelerated), so equal records always share a key.
	var raw [8]byte
	binary.BigEndian.PutUint32(raw[:4], crc32.Checksum(data, crc32c))
	binary.BigEndian.PutUint32(raw[4:], crc32.ChecksumIEEE(data))
	f.pk = hex.AppendEncode(f.pk[:0], raw[:])
	return string(f.pk)
}

// While the direct queue is full and the spool has no room, a flow waits in
// turns for room in the spool (directFullSpoolWait) and in the queue
// (directFullQueueWait). The spool's wait is the longer one: while the
// destination is down the spool is where room comes back first.
const (
	directFullSpoolWait = 500 * time.Millisecond
	directFullQueueWait = 100 * time.Millisecond
)

// onAggregate appends a closed aggregate to the spool. Called by the builder
// under f.mu.
func (f *flow) onAggregate(group int, a *aggregate.Aggregate) error {
	if f.random && !f.rekeyed {
		f.nextRandomPK()
	}
	f.entry = f.entry[:0]
	var id spool.ID
	var err error
	for wait := time.Duration(0); ; {
		if f.direct != nil && f.directOK.Load() {
			tk, waited := f.direct.offer(f.appendTo, a, wait)
			if waited > 0 {
				f.metrics.directWait.Add(waited.Seconds())
			}
			if tk != nil {
				f.metrics.aggregates.Inc()
				f.metrics.aggregatedRecords.Add(float64(a.Count))
				f.metrics.direct.Inc()
				f.trackLocked(func(t *tracker) { t.closed(group, 0, tk, true) })
				return nil
			}
		}
		if len(f.entry) == 0 {
			f.entry = a.AppendEntryHead(f.entry) // the entry is f.entry, then a.Body
		}
		if f.direct == nil || !f.directOK.Load() {
			id, err = f.spool.AppendParts(f.appendTo, f.entry, a.Body)
			break
		}
		// The direct queue stayed full (offer waited for room while the
		// destination was healthy): the aggregate goes to the spool. The
		// wait for room there is bounded, and alternates with a wait for
		// room in the queue: a spool that cannot make room (its disk under
		// min_free_bytes) must not hold the flow once the direct senders
		// deliver again.
		actx, cancel := context.WithTimeout(f.appendTo, f.spoolWait)
		id, err = f.spool.AppendParts(actx, f.entry, a.Body)
		timedOut := actx.Err() != nil && errors.Is(err, actx.Err())
		cancel()
		if err == nil {
			f.metrics.directFull.Inc()
		}
		// Only the end of this wait (no room yet: when_full: block) sends
		// the aggregate back to the queue. Any other answer is final, even
		// one that came after the wait ended: ErrFull from a drop_newest
		// spool whose Append was slow (a full disk's failed writes and
		// rolls) is a drop to count, not a reason to offer the aggregate
		// again and again (the flow, and its sources, stayed in this loop
		// while the spool counted a drop at every turn).
		if err == nil || f.appendTo.Err() != nil || !timedOut {
			break
		}
		wait = directFullQueueWait
	}
	switch {
	case err == nil:
		f.metrics.aggregates.Inc()
		f.metrics.aggregatedRecords.Add(float64(a.Count))
		f.trackLocked(func(t *tracker) { t.closed(group, id, nil, true) })
		return nil
	case errors.Is(err, spool.ErrFull):
		// when_full: drop_newest. Counted; the records no longer hold the
		// checkpoint back, as the operator chose.
		f.metrics.dropped("spool_full").Add(float64(a.Count))
		f.trackLocked(func(t *tracker) { t.closed(group, 0, nil, false) })
		return nil
	case errors.Is(err, spool.ErrTooLarge):
		if derr := f.dlq.writeAggregate(f.name, "", "spool_entry_too_large: "+err.Error(), a); derr != nil {
			f.appendErr = derr
			return derr
		}
		f.metrics.dropped("rejected").Add(float64(a.Count))
		f.trackLocked(func(t *tracker) { t.closed(group, 0, nil, false) })
		return nil
	default:
		f.appendErr = fmt.Errorf("flow %s: spool append: %w", f.name, err)
		return f.appendErr
	}
}

// close stops the processing stage's background work.
func (f *flow) close() { f.proc.Close() }

// closeDirect closes the direct path (shutdown, a sender being replaced):
// aggregates go to the spool, and a wait for room in the direct queue ends
// (the path is unhealthy until a send of the next sender succeeds).
func (f *flow) closeDirect() {
	f.directOK.Store(false)
	if f.direct != nil {
		f.direct.setBad()
	}
}

// flushOlder closes aggregates that waited longer than max_buffered_time.
func (f *flow) flushOlder(ctx context.Context, now time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.appendTo = ctx
	f.appendErr = nil
	return f.builder.FlushOlder(now.Add(-f.cfg.Aggregation.MaxBufferedTime), f.onAggregate)
}

// flushAll closes every open aggregate (shutdown, --once). It gives up
// when ctx ends, even waiting for the flow's lock.
func (f *flow) flushAll(ctx context.Context) error {
	if !lockCtx(ctx, &f.mu) {
		return fmt.Errorf("flow %s: flush: %w", f.name, context.Cause(ctx))
	}
	defer f.mu.Unlock()
	f.appendTo = ctx
	f.appendErr = nil
	return f.builder.FlushAll(f.onAggregate)
}

// lockCtx locks mu, or gives up when ctx ends. The flow's lock is held
// across a spool Append, whose wait ends with its own context: this is for
// a holder that does not return in time.
func lockCtx(ctx context.Context, mu *sync.Mutex) bool {
	if mu.TryLock() {
		return true
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			if mu.TryLock() {
				return true
			}
		}
	}
}

// pending returns the records buffered in open aggregates (0 when the flow
// is busy: shutdown's summary does not wait for it).
func (f *flow) pending() int {
	if !f.mu.TryLock() {
		return 0
	}
	defer f.mu.Unlock()
	n, _ := f.builder.Pending()
	return n
}

// heldBack names the files whose checkpoints wait for records that are not
// durable: those records are read again after a restart.
func (f *flow) heldBack() []string {
	var out []string
	paths := map[source.Committer]map[string]string{}
	f.track(func(t *tracker) {
		for _, ft := range t.files {
			if len(ft.open) == 0 && len(ft.pending) == 0 {
				continue
			}
			name := ft.key.fileID
			if lister, ok := ft.committer.(interface{ Files() []file.FileStatus }); ok {
				if paths[ft.committer] == nil {
					m := map[string]string{}
					for _, fs := range lister.Files() {
						m[fs.FileID] = fs.Path
					}
					paths[ft.committer] = m
				}
				if p := paths[ft.committer][ft.key.fileID]; p != "" {
					name = p
				}
			}
			out = append(out, fmt.Sprintf("%s@%d", name, max(ft.committed, 0)))
		}
	})
	sort.Strings(out)
	return out
}

// track runs fn on the tracker under its lock.
func (f *flow) track(fn func(*tracker)) {
	f.tmu.Lock()
	fn(f.tracker)
	f.tmu.Unlock()
}

// commit moves the sources' checkpoints to what is durable. It does not wait
// for an aggregation blocked on a full spool.
func (f *flow) commit(now time.Time) {
	durable := f.spool.Durable()
	f.track(func(t *tracker) { t.commit(durable, now, 10*time.Minute) })
}

// idle reports whether nothing is buffered in the aggregator and every
// tracked record is durable. A flow busy appending is not idle.
func (f *flow) idle() bool {
	if !f.mu.TryLock() {
		return false
	}
	n, _ := f.builder.Pending()
	f.mu.Unlock()
	if n > 0 {
		return false
	}
	f.tmu.Lock()
	defer f.tmu.Unlock()
	return !f.tracker.inFlight()
}

// commitEvery is how often a flow hands durable offsets to its sources.
const commitEvery = 50 * time.Millisecond

// runTimers flushes aged aggregates and commits checkpoints until ctx ends.
// Flushes append with flushCtx, which ends when shutdown begins, so a flush
// blocked on a full spool lets go of the flow (shutdown's final flush takes
// over the aggregate, which an interrupted emit leaves open).
func (f *flow) runTimers(ctx, flushCtx context.Context, checkpointEvery time.Duration) error {
	flushEvery := max(f.cfg.Aggregation.MaxBufferedTime/2, 5*time.Millisecond)
	ft := time.NewTicker(flushEvery)
	defer ft.Stop()
	// Records become durable continuously (spool syncs, direct
	// deliveries); the sooner their files' checkpoints move, the fewer
	// records a crash sends again. Committing is cheap (the source persists
	// on its own checkpoint.interval), so it runs often.
	// Commits run on their own: a flush waits for the flow's lock, which an
	// emit blocked on a full spool holds for as long as the spool stays
	// full, and checkpoints must keep moving meanwhile (what was appended
	// before still becomes durable).
	cctx, stopCommits := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ct := time.NewTicker(min(checkpointEvery, commitEvery))
		defer ct.Stop()
		for {
			select {
			case <-cctx.Done():
				return
			case now := <-ct.C:
				f.commit(now)
			}
		}
	}()
	defer func() { stopCommits(); wg.Wait() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-ft.C:
			f.clock.Store(now.UnixNano())
			if flushCtx.Err() != nil {
				continue
			}
			if err := f.flushOlder(flushCtx, now); err != nil && flushCtx.Err() == nil {
				return err
			}
		}
	}
}
