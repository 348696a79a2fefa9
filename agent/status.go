package agent

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/kplagent/agent/agent/source/file"
	"github.com/kplagent/agent/internal/redact"
	"github.com/kplagent/agent/outputs"
)

// Snapshot is a summary of the agent's counters for a status line.
type Snapshot struct {
	RecordsRead    int64
	BytesRead      int64
	RecordsSent    int64
	Retries        int64
	DeadLettered   int64
	Dropped        int64
	BacklogEntries int64 // unacknowledged spool entries
	BacklogBytes   int64 // spool bytes on disk
	// PartialLines are last lines of files sent without their newline
	// (the file stopped growing, was rotated away, or --once reached its
	// end): what is appended to such a line later is a record of its own.
	PartialLines int64
	// TruncatedRecords are lines of files and streams longer than their
	// source's max_record_bytes, cut to it (the rest skipped).
	TruncatedRecords int64
	// Stalled are the outputs whose destination does not answer
	// (Agent.Stalled).
	Stalled []StalledOutput
}

// FilesBehind is how many bytes the file sources have left to read (size
// as last seen minus read offset, over every file followed). Safe after Run
// returned: agent tail --once tells from it whether an interrupted run read
// its files to their end.
func (a *Agent) FilesBehind() int64 {
	var n int64
	for _, fr := range a.runtimeFlows() {
		for _, src := range fr.sources {
			if fl, ok := src.(interface{ Files() []file.FileStatus }); ok {
				for _, fi := range fl.Files() {
					n += max(fi.Size-fi.Offset, 0)
				}
			}
		}
	}
	return n
}

// FilesReadToEnd reports whether every file source run with Once ended
// because it had read its files to their end (file.Source.ReadToEnd). Safe
// after Run returned: a stop in the middle of a compressed rotation read at
// start leaves FilesBehind at 0 (its decompressed size is not known), but
// not this.
func (a *Agent) FilesReadToEnd() bool {
	for _, fr := range a.runtimeFlows() {
		for _, src := range fr.sources {
			if fl, ok := src.(interface{ ReadToEnd() bool }); ok && !fl.ReadToEnd() {
				return false
			}
		}
	}
	return true
}

// Snapshot gathers the current counters (cheap enough for once a second).
func (a *Agent) Snapshot() Snapshot {
	var s Snapshot
	fams, err := a.m.reg.Gather()
	if err != nil {
		return s
	}
	sum := func(f *dto.MetricFamily) int64 {
		var t float64
		for _, m := range f.GetMetric() {
			switch {
			case m.Counter != nil:
				t += m.Counter.GetValue()
			case m.Gauge != nil:
				t += m.Gauge.GetValue()
			}
		}
		return int64(t)
	}
	for _, f := range fams {
		switch f.GetName() {
		case "agent_records_received_total":
			s.RecordsRead = sum(f)
		case "agent_bytes_received_total":
			s.BytesRead = sum(f)
		case "agent_output_records_sent_total":
			s.RecordsSent = sum(f)
		case "agent_output_retries_total":
			s.Retries = sum(f)
		case "agent_output_dead_lettered_total":
			s.DeadLettered = sum(f)
		case "agent_records_dropped_total":
			s.Dropped = sum(f)
		case "agent_spool_entries":
			s.BacklogEntries = sum(f)
		case "agent_spool_bytes":
			s.BacklogBytes = sum(f)
		case "agent_file_partial_flushes_total":
			s.PartialLines = sum(f)
		case "agent_file_truncated_records_total", "agent_stdin_truncated_records_total":
			s.TruncatedRecords += sum(f)
		}
	}
	s.Stalled = a.Stalled()
	return s
}

// Status is what `agent status` shows: GET /status on the admin endpoint
// serves it as JSON. Durations are strings ("1.5s"), times RFC 3339.
type Status struct {
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	Uptime  string    `json:"uptime"`
	// State is starting, running, reloading (a new configuration is being
	// applied: it stops, as at shutdown, the flows that change, which may
	// take up to shutdown_timeout while their sends in flight finish; the
	// pipeline stays ready) or stopping.
	State string `json:"state"`
	// ReloadingFor is how long the reload being applied has taken so far
	// ("" when none is).
	ReloadingFor string `json:"reloading_for,omitempty"`
	// Ready is what /readyz answers; NotReady says why not.
	Ready    bool   `json:"ready"`
	NotReady string `json:"not_ready,omitempty"`
	// Stalled names the outputs whose destination does not answer
	// (StalledOutput), one sentence each; they do not make the agent not ready (/readyz says
	// them in its body; /readyz?fail_stalled=D fails on them).
	Stalled      []string       `json:"stalled,omitempty"`
	Flows        []FlowStatus   `json:"flows"`
	Outputs      []OutputStatus `json:"outputs"`
	DeadLettered int64          `json:"dead_lettered"` // records written to the dead-letter file (or dropped with a reason) since start
	// LastReload is how the last reload (SIGHUP, agent reload) went; absent
	// before the first. A failed one left the configuration loaded before
	// it running: the file on disk is not what runs, and a restart would
	// fail on it.
	LastReload *ReloadStatus `json:"last_reload,omitempty"`
}

// ReloadStatus is how a reload went.
type ReloadStatus struct {
	Time   time.Time `json:"time"`
	Result string    `json:"result"`          // ok or failed
	Error  string    `json:"error,omitempty"` // why it was refused
}

// RecordReload notes how a reload went, for Status: err is nil when it was
// applied, else why it was refused (a file that does not load included).
func (a *Agent) RecordReload(err error) {
	r := &ReloadStatus{Time: time.Now(), Result: "ok"}
	if err != nil {
		r.Result, r.Error = "failed", err.Error()
	}
	a.lastReload.Store(r)
}

// FlowStatus is one flow: its sources, its spool, and which output it sends to.
type FlowStatus struct {
	Name string `json:"name"`
	// Output is the output the flow sends to now: its primary, or its
	// failover while the primary is failing (OnFailover).
	Output        string         `json:"output"`
	Primary       string         `json:"primary"`
	Failover      string         `json:"failover,omitempty"`
	OnFailover    bool           `json:"on_failover"`
	RecordsPerSec float64        `json:"records_per_sec"` // read from its sources, over the last 10 s
	Spool         SpoolStatus    `json:"spool"`
	Sources       []SourceStatus `json:"sources"`
	// ShardMapWait is set while the flow waits for its output's first
	// shard map (a Kinesis stream not found, ListShards refused): its
	// records wait unread in their sources, and nothing is sent, so no
	// send fails either.
	ShardMapWait *ShardMapWait `json:"shard_map_wait,omitempty"`
}

// ShardMapWait is how long a flow has waited for its first shard map and
// why the last fetch failed.
type ShardMapWait struct {
	For        string  `json:"for"`
	ForSeconds float64 `json:"for_seconds"`
	LastError  string  `json:"last_error"`
}

// SpoolStatus is a flow's backlog on disk.
type SpoolStatus struct {
	Entries int64 `json:"entries"`
	Bytes   int64 `json:"bytes"`
	// OldestAge is how long the oldest undelivered entry has waited (to
	// about a second; for entries recovered at start-up, at least the time
	// since the start).
	OldestAge        string  `json:"oldest_age"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	// Blocked: appends wait for room (when_full: block), sources are paused.
	Blocked bool `json:"blocked"`
}

// SourceStatus is one source and, for file sources, the files it follows.
type SourceStatus struct {
	Name        string       `json:"name"`
	Type        string       `json:"type"`
	RecordsRead uint64       `json:"records_read"`
	BytesRead   uint64       `json:"bytes_read"`
	LastRead    *time.Time   `json:"last_read,omitempty"` // to about a second
	Files       []FileStatus `json:"files,omitempty"`
}

// FileStatus is one followed file.
type FileStatus struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	Offset int64  `json:"offset"`
	// Behind is how many bytes are left to read (size minus read offset).
	Behind int64 `json:"behind_bytes"`
	// Uncommitted is how many bytes are not durable downstream yet (read
	// again after a crash).
	Uncommitted int64  `json:"uncommitted_bytes"`
	State       string `json:"state"`
}

// OutputStatus is one output.
type OutputStatus struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// State is ok, stalled (a send has waited for the destination's
	// answer for longer than half the output's timeout, at most 10 s: see
	// SendingFor), throttled (it asked for a pause), retrying (its last
	// attempt failed and is retried), failed over (a flow's primary whose
	// sends go to its failover), sending (it never delivered yet, and a
	// send waits for the destination's answer, for less than the stalled
	// threshold) or idle (never sent).
	State         string     `json:"state"`
	Active        bool       `json:"active"` // some flow sends to it now
	RecordsSent   uint64     `json:"records_sent"`
	BytesSent     uint64     `json:"bytes_sent"`
	RecordsPerSec float64    `json:"records_per_sec"` // over the last 10 s
	LastSuccess   *time.Time `json:"last_success,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	LastErrorAt   *time.Time `json:"last_error_at,omitempty"`
	FailingFor    string     `json:"failing_for,omitempty"` // since the first failed attempt after the last success

	// SendsInFlight are the sends waiting for the destination's answer now;
	// SendingFor is how long the oldest of them has waited ("" with none).
	SendsInFlight     int     `json:"sends_in_flight"`
	SendingFor        string  `json:"sending_for,omitempty"`
	SendingForSeconds float64 `json:"sending_for_seconds"`
}

// Output states.
const (
	OutputIdle = "idle"
	// OutputSending: an output that has not delivered yet (it would be
	// idle) while a send to it waits for the destination's answer, for
	// less than the stalled threshold.
	OutputSending   = "sending"
	OutputOK        = "ok"
	OutputRetrying  = "retrying"
	OutputThrottled = "throttled"
	// OutputFailedOver: a flow's primary whose sends go to the failover
	// while it keeps failing (tried again every failback_after).
	OutputFailedOver = "failed over"

	// OutputStalled: a send has waited for the destination's answer for
	// longer than half the output's timeout (at most 10 s).
	OutputStalled = "stalled"
)

// outputSeen is what the sender saw of an output, for status and
// readiness. Times are unix nanoseconds, 0 for never.
type outputSeen struct {
	records, bytes atomic.Uint64
	lastOK         atomic.Int64
	lastErrAt      atomic.Int64
	failingSince   atomic.Int64 // first retryable failure since the last success; 0 when not failing
	lastErr        atomic.Pointer[string]
	// noAnswerSince is when the first of the sends that have all timed
	// out since the last answer began (its end less the output's
	// timeout); 0 once the destination answers (a success or an error).
	noAnswerSince atomic.Int64
}

// note records the result of one Send of b (after rejected records were
// settled). Only retryable failures make an output failing: a throttle, a
// partial failure or a rejection come from a destination that answers.
func (o *outputState) note(err error, b *outputs.Batch) {
	now := time.Now().UnixNano()
	var pe *outputs.PartialError
	var te *outputs.ThrottleError
	switch {
	case err == nil:
		o.delivered(b, nil, now)
	case errors.As(err, &pe):
		failed := make(map[int]bool, len(pe.Failed))
		for _, j := range pe.Failed {
			failed[j] = true
		}
		o.delivered(b, failed, now)
	}
	if err == nil {
		o.seen.noAnswerSince.Store(0)
		return
	}
	if timedOut(err) {
		began := now
		if t, ok := o.out.(outputs.SendTimeouter); ok && t.SendTimeout() > 0 {
			began -= int64(t.SendTimeout())
		}
		o.seen.noAnswerSince.CompareAndSwap(0, began)
	} else {
		o.seen.noAnswerSince.Store(0)
	}
	msg := redact.Error(err).Error()
	o.seen.lastErr.Store(&msg)
	o.seen.lastErrAt.Store(now)
	if pe == nil && !errors.As(err, &te) && !outputs.IsPermanent(err) {
		o.seen.failingSince.CompareAndSwap(0, now)
	} else {
		o.seen.failingSince.Store(0)
	}
}

func (o *outputState) delivered(b *outputs.Batch, failed map[int]bool, now int64) {
	var n, size int
	for i := range b.Records {
		if failed[i] {
			continue
		}
		n += b.Records[i].Count
		size += len(b.Records[i].Body)
	}
	if n == 0 && len(b.Records) > 0 {
		return
	}
	o.seen.records.Add(uint64(n))
	o.seen.bytes.Add(uint64(size))
	o.seen.lastOK.Store(now)
	o.seen.failingSince.Store(0)
	o.metrics.bytesSent.Add(float64(size))
	o.metrics.lastSuccess.Set(float64(now) / 1e9)
}

// failingFor is how long the output has been failing at now (0: it is not).
func (o *outputState) failingFor(now time.Time) time.Duration {
	since := o.seen.failingSince.Load()
	if since == 0 {
		return 0
	}
	return now.Sub(time.Unix(0, since))
}

func (o *outputState) state(now time.Time) string {
	switch {
	case o.paused() > 0:
		return OutputThrottled
	case o.seen.failingSince.Load() != 0:
		return OutputRetrying
	case o.seen.lastOK.Load() == 0 && o.seen.lastErrAt.Load() == 0:
		return OutputIdle
	}
	return OutputOK
}

// switched notes that the flow's sends go from one output to the other.
func (s *sender) switched(from, to *outputState, msg string) {
	s.metrics.active(from.out.Name()).Set(0)
	s.metrics.active(to.out.Name()).Set(1)
	if to == s.primary {
		s.metrics.failbacks.Inc()
		s.log.Info(msg, "output", to.out.Name(), "failover", from.out.Name())
	}
}

// active reports which output the flow sends to now.
func (s *sender) activeOutput() (*outputState, bool) {
	if s.failover == nil {
		return s.primary, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.onFailover {
		return s.failover, true
	}
	return s.primary, false
}

// liveness is the watchdog's view of a sender: its workers are alive when
// none is delivering (they wait for entries) or the one delivering made
// progress (an attempt began or ended) recently.
type liveness struct {
	busy atomic.Int32
	last atomic.Int64
}

func (l *liveness) enter()            { l.busy.Add(1); l.beat(time.Now()) }
func (l *liveness) leave()            { l.busy.Add(-1); l.beat(time.Now()) }
func (l *liveness) beat(t time.Time)  { l.last.Store(t.UnixNano()) }
func (l *liveness) idleOrSince() bool { return l.busy.Load() == 0 }

// livenessSlack is added to the longest legitimate pause of a part (a
// backoff, a throttle, a flush interval) before the watchdog calls it stuck:
// a Send is bounded by its output's own timeout, well below this.
const livenessSlack = 2 * time.Minute

// Alive reports whether the pipeline makes progress or waits for work:
// every flow's timers goroutine ticked recently (or waits behind a source
// paused by a full spool, or by its first shard map), and every sender either
// waits for entries or began or finished an attempt recently. The systemd
// watchdog is pinged only while it holds. It returns what is stuck.
func (a *Agent) Alive() error {
	now := time.Now()
	for _, fr := range a.runtimeFlows() {
		// The timers wait for the flow's lock while an emit holding it waits
		// for room in a full spool (when_full: block): that is waiting
		// correctly, as long as the sender below is alive.
		tick := max(fr.cfg.Aggregation.MaxBufferedTime/2, 5*time.Millisecond)
		// So do they while an emit waits for the first shard map (retried
		// and logged: a restart would only wait again).
		if d := now.Sub(fr.flow.now()); d > tick+livenessSlack && (fr.spool == nil || fr.spool.Stats().BlockedAppends == 0) && !fr.flow.mapWait.Load() {
			return fmt.Errorf("flow %s: its timers have not ticked for %s", fr.cfg.Name, d.Round(time.Second))
		}
		s := fr.sender
		if s.live.idleOrSince() {
			continue
		}
		limit := s.cfg.BackoffMax + s.maxThrottle() + livenessSlack
		if d := now.Sub(time.Unix(0, s.live.last.Load())); d > limit {
			return fmt.Errorf("flow %s: its sender has made no progress for %s", fr.cfg.Name, d.Round(time.Second))
		}
	}
	return nil
}

// runtimeFlows returns the running flows (none before Run built them).
func (a *Agent) runtimeFlows() []*flowRuntime {
	a.stMu.Lock()
	defer a.stMu.Unlock()
	return a.running
}

// runtimeConfig is the configuration of the running flows (a reload
// replaces a.cfg in the run loop; other goroutines read this).
func (a *Agent) runtimeConfig() Config {
	a.stMu.Lock()
	defer a.stMu.Unlock()
	if a.runningCfg == nil {
		return a.cfg // before Run: nothing writes it
	}
	return *a.runningCfg
}

// statusWindow is the span over which rates are computed.
const statusWindow = 10 * time.Second

// tracker of counters over time: rates, the oldest spool entry's age, how
// long a spool has been blocking. Sampled once a second by sample.
type statusTracker struct {
	mu       sync.Mutex
	started  time.Time
	flows    map[string]*flowSamples
	outputs  map[string]*rateRing
	sources  map[string]*sourceSeen
	srcNames map[string][]string // flow -> sources
	// retired is what the senders a reload replaced or removed had
	// delivered, per output: status goes on counting from there, as the
	// output's Prometheus counters do.
	retired map[string]*outputTotals
	// stallWarned is when each output's stall was last logged (warnStalled).
	stallWarned map[string]time.Time
	// recovered is, per flow whose spool held entries when it opened, a
	// time its oldest entry was written no later than (its oldest segment
	// file's modification time).
	recovered map[string]time.Time
}

// setRecovered records that flow's spool opened with entries written no
// later than at.
func (st *statusTracker) setRecovered(flow string, at time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.recovered[flow] = at
}

// outputTotals is what an output delivered, over senders.
type outputTotals struct {
	records, bytes uint64
	lastOK         int64 // unix nanos, 0 for never
}

func (t *outputTotals) add(o *outputState) {
	t.records += o.seen.records.Load()
	t.bytes += o.seen.bytes.Load()
	t.lastOK = max(t.lastOK, o.seen.lastOK.Load())
}

// outputView is an output as status shows it: its totals over the flows
// that send to it (each has its own sender and outputState) and the
// senders gone before, and the state of the one that tells most (a
// failing one, else the last to deliver).
type outputView struct {
	outputTotals
	st *outputState
}

// retire counts what the senders of prev that are not in cur delivered
// into st.retired. Call with st.mu held.
func (st *statusTracker) retire(prev, cur []*flowRuntime) {
	live := map[*outputState]bool{}
	for _, fr := range cur {
		for _, o := range fr.sender.outputStates() {
			live[o] = true
		}
	}
	for _, fr := range prev {
		for _, o := range fr.sender.outputStates() {
			if live[o] {
				continue
			}
			live[o] = true // once, even if listed twice
			t := st.retired[o.out.Name()]
			if t == nil {
				t = &outputTotals{}
				st.retired[o.out.Name()] = t
			}
			t.add(o)
		}
	}
}

// outputStates lists the sender's primary and failover.
func (s *sender) outputStates() []*outputState {
	if s.failover != nil {
		return []*outputState{s.primary, s.failover}
	}
	return []*outputState{s.primary}
}

type flowSamples struct {
	appends      []appendSample // when the spool's Appended counter reached each value
	lastTick     time.Time
	lastAppended uint64
	blockedSince time.Time // zero: not blocked
	read         rateRing
}

// appendSample: entries numbered below appended were appended by high,
// those at or above the previous sample's appended after low.
type appendSample struct {
	low, high time.Time
	appended  uint64
}

// maxAppendSamples bounds the memory of a long backlog: beyond it,
// neighbouring samples are merged (the age gets coarser, never younger).
const maxAppendSamples = 1 << 14

type rateRing struct {
	t []time.Time
	v []uint64
}

func (r *rateRing) add(t time.Time, v uint64) {
	r.t, r.v = append(r.t, t), append(r.v, v)
	for len(r.t) > 2 && t.Sub(r.t[0]) > statusWindow {
		r.t, r.v = r.t[1:], r.v[1:]
	}
}

func (r *rateRing) rate() float64 {
	n := len(r.t)
	if n < 2 {
		return 0
	}
	d := r.t[n-1].Sub(r.t[0]).Seconds()
	if d <= 0 || r.v[n-1] < r.v[0] {
		return 0
	}
	return float64(r.v[n-1]-r.v[0]) / d
}

type sourceSeen struct {
	sm       *sourceMetrics
	records  uint64
	lastRead time.Time
}

func newStatusTracker(now time.Time) *statusTracker {
	return &statusTracker{started: now, flows: map[string]*flowSamples{}, outputs: map[string]*rateRing{},
		sources: map[string]*sourceSeen{}, srcNames: map[string][]string{}, retired: map[string]*outputTotals{},
		stallWarned: map[string]time.Time{}, recovered: map[string]time.Time{}}
}

// sample takes one look at the counters.
func (a *Agent) sample(now time.Time) {
	st := a.st
	flows := a.runtimeFlows()
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, fr := range flows {
		fs := st.flows[fr.cfg.Name]
		if fs == nil {
			fs = &flowSamples{lastTick: st.started}
			st.flows[fr.cfg.Name] = fs
		}
		ss := fr.spool.Stats()
		fs.observe(now, ss.Appended, ss.Entries, ss.BlockedAppends > 0)
		var read uint64
		for _, name := range st.srcNames[fr.cfg.Name] {
			s := a.seenSource(name)
			if s == nil {
				continue
			}
			r, _ := s.sm.read()
			if r != s.records {
				s.records, s.lastRead = r, now
			}
			read += r
		}
		fs.read.add(now, read)
	}
	for name, o := range a.outputViews() {
		r := st.outputs[name]
		if r == nil {
			r = &rateRing{}
			st.outputs[name] = r
		}
		r.add(now, o.records)
	}
	a.warnStalled(now, a.sendingByOutput())
}

// observe notes the spool's counters at now.
func (fs *flowSamples) observe(now time.Time, appended uint64, entries int64, blocked bool) {
	if appended != fs.lastAppended {
		fs.appends = append(fs.appends, appendSample{low: fs.lastTick, high: now, appended: appended})
		fs.lastAppended = appended
		if len(fs.appends) > maxAppendSamples {
			fs.appends = mergeSamples(fs.appends)
		}
	}
	fs.lastTick = now
	// Samples all of whose entries are gone are not needed.
	removed := int64(appended) - entries
	for len(fs.appends) > 0 && int64(fs.appends[0].appended) <= removed {
		fs.appends = fs.appends[1:]
	}
	if blocked {
		if fs.blockedSince.IsZero() {
			fs.blockedSince = now
		}
	} else {
		fs.blockedSince = time.Time{}
	}
}

func mergeSamples(s []appendSample) []appendSample {
	out := s[:0]
	for i := 0; i < len(s); i += 2 {
		if i+1 < len(s) {
			out = append(out, appendSample{low: s[i].low, high: s[i+1].high, appended: s[i+1].appended})
		} else {
			out = append(out, s[i])
		}
	}
	return out
}

// oldestAge is how long the oldest entry in the flow's spool has waited.
func (st *statusTracker) oldestAge(flow string, ss spoolStatsView, now time.Time) time.Duration {
	if ss.Entries <= 0 {
		return 0
	}
	fs := st.flows[flow]
	removed := int64(ss.Appended) - ss.Entries
	if fs == nil || removed < 0 {
		// Recovered when the spool opened: at least as old as the
		// process, and as the oldest segment's last write (a restart
		// must not make a stuck backlog look fresh).
		since := st.started
		if t, ok := st.recovered[flow]; ok && t.Before(since) {
			since = t
		}
		return now.Sub(since)
	}
	for _, smp := range fs.appends {
		if int64(smp.appended) > removed {
			return now.Sub(smp.low)
		}
	}
	// Appended after the last sample.
	return now.Sub(fs.lastTick)
}

type spoolStatsView struct {
	Entries  int64
	Appended uint64
}

// outputStates lists the running outputs' states by name.
func (a *Agent) outputViews() map[string]*outputView {
	out := map[string]*outputView{}
	for _, fr := range a.runtimeFlows() {
		for _, o := range fr.sender.outputStates() {
			name := o.out.Name()
			v := out[name]
			if v == nil {
				v = &outputView{st: o}
				if t := a.st.retired[name]; t != nil {
					v.outputTotals = *t
				}
				out[name] = v
			}
			v.add(o)
			if cur := v.st; cur != o && (o.seen.failingSince.Load() != 0 && cur.seen.failingSince.Load() == 0 ||
				cur.seen.failingSince.Load() == 0 && o.seen.lastOK.Load() > cur.seen.lastOK.Load()) {
				v.st = o
			}
		}
	}
	return out
}

// notReady says why the pipeline is not ready, "" when it is: it is not
// running (starting or stopping), or for longer than admin.not_ready_after
// a flow's outputs have all been failing, its spool has been full and
// blocking its sources, or it has waited for its first shard map.
func (a *Agent) notReady(now time.Time) string {
	if a.state.Load() != stateRunning {
		return "the pipeline is " + a.stateName()
	}
	after := a.runtimeConfig().Admin.NotReadyAfter
	if after <= 0 {
		return ""
	}
	for _, fr := range a.runtimeFlows() {
		s := fr.sender
		d := s.primary.failingFor(now)
		if s.failover != nil {
			d = min(d, s.failover.failingFor(now))
		}
		if d > after {
			return fmt.Sprintf("flow %s: its outputs have been failing for %s", fr.cfg.Name, d.Round(time.Second))
		}
		if since, _, ok := fr.flow.shardMapWait(); ok && now.Sub(since) > after {
			return fmt.Sprintf("flow %s: no shard map from its output for %s (records wait unread)", fr.cfg.Name, now.Sub(since).Round(time.Second))
		}
		a.st.mu.Lock()
		var blocked time.Duration
		if fs := a.st.flows[fr.cfg.Name]; fs != nil && !fs.blockedSince.IsZero() {
			blocked = now.Sub(fs.blockedSince)
		}
		a.st.mu.Unlock()
		if blocked > after {
			return fmt.Sprintf("flow %s: its spool has been full, blocking its sources, for %s", fr.cfg.Name, blocked.Round(time.Second))
		}
	}
	return ""
}

// StateReloading is Status.State while a reload is applied.
const StateReloading = "reloading"

// Pipeline states.
const (
	stateStarting int32 = iota
	stateRunning
	stateStopping
)

func (a *Agent) stateName() string {
	switch a.state.Load() {
	case stateRunning:
		if a.reloadSince.Load() != 0 {
			return StateReloading
		}
		return "running"
	case stateStopping:
		return "stopping"
	}
	return "starting"
}

// Status describes the running pipeline (see Status). Safe to call at any
// time, from any goroutine.
func (a *Agent) Status() Status {
	now := time.Now()
	st := Status{Version: a.set.Version, Started: a.st.started, Uptime: now.Sub(a.st.started).Round(time.Second).String(),
		State: a.stateName(), Flows: []FlowStatus{}, Outputs: []OutputStatus{}}
	if since := a.reloadSince.Load(); since != 0 && st.State == StateReloading {
		st.ReloadingFor = roundAge(max(now.Sub(time.Unix(0, since)), 0)).String()
	}
	st.LastReload = a.lastReload.Load()
	st.NotReady = a.notReady(now)
	st.Ready = st.NotReady == ""
	for _, s := range a.stalled(now) {
		st.Stalled = append(st.Stalled, s.String())
	}
	if d := a.dlqCount.Load(); d != nil {
		st.DeadLettered = d.Load()
	}
	types := map[string]string{}
	cfg := a.runtimeConfig()
	for _, oc := range cfg.Outputs {
		types[oc.Name] = oc.Type
	}
	srcTypes := map[string]string{}
	for _, sc := range cfg.Sources {
		srcTypes[sc.Name] = sc.Type
	}
	active, failedOver := map[string]bool{}, map[string]bool{}
	sending := a.sendingByOutput()
	a.st.mu.Lock()
	defer a.st.mu.Unlock()
	for _, fr := range a.runtimeFlows() {
		o, onFailover := fr.sender.activeOutput()
		active[o.out.Name()] = true
		if onFailover {
			failedOver[fr.cfg.Output] = true
		}
		ss := fr.spool.Stats()
		age := a.st.oldestAge(fr.cfg.Name, spoolStatsView{Entries: ss.Entries, Appended: ss.Appended}, now)
		f := FlowStatus{Name: fr.cfg.Name, Output: o.out.Name(), Primary: fr.cfg.Output, Failover: fr.cfg.Failover, OnFailover: onFailover,
			Spool:   SpoolStatus{Entries: ss.Entries, Bytes: ss.Bytes, OldestAge: age.Round(time.Second).String(), OldestAgeSeconds: age.Seconds(), Blocked: ss.BlockedAppends > 0},
			Sources: []SourceStatus{}}
		if fs := a.st.flows[fr.cfg.Name]; fs != nil {
			f.RecordsPerSec = fs.read.rate()
		}
		if since, lastErr, ok := fr.flow.shardMapWait(); ok {
			d := max(now.Sub(since), 0)
			f.ShardMapWait = &ShardMapWait{For: roundAge(d).String(), ForSeconds: d.Seconds(), LastError: lastErr}
		}
		for _, src := range fr.sources {
			s := SourceStatus{Name: src.Name(), Type: srcTypes[src.Name()]}
			if seen := a.seenSource(src.Name()); seen != nil {
				s.RecordsRead, s.BytesRead = seen.sm.read()
				if s.RecordsRead != seen.records {
					seen.records, seen.lastRead = s.RecordsRead, now
				}
				if !seen.lastRead.IsZero() {
					t := seen.lastRead
					s.LastRead = &t
				}
			}
			if fl, ok := src.(interface{ Files() []file.FileStatus }); ok {
				for _, fi := range fl.Files() {
					s.Files = append(s.Files, FileStatus{Path: fi.Path, Size: fi.Size, Offset: fi.Offset,
						Behind: max(fi.Size-fi.Offset, 0), Uncommitted: max(fi.Size-fi.Committed, 0), State: fi.State})
				}
			}
			f.Sources = append(f.Sources, s)
		}
		st.Flows = append(st.Flows, f)
	}
	for name, v := range a.outputViews() {
		o := v.st
		os := OutputStatus{Name: name, Type: types[name], State: o.state(now), Active: active[name],
			RecordsSent: v.records, BytesSent: v.bytes}
		if os.State == OutputIdle && v.lastOK != 0 {
			os.State = OutputOK // its sender is new (a reload); an earlier one delivered
		}
		if s := sending[name]; s != nil {
			os.SendsInFlight = s.n
			if d := s.age(now); d > 0 {
				os.SendingFor, os.SendingForSeconds = roundAge(d).String(), d.Seconds()
			}
			if s.stalled(now) {
				os.State = OutputStalled
			} else if os.State == OutputIdle && s.n > 0 {
				os.State = OutputSending // not idle: its first send is under way
			}
		}
		if failedOver[name] && !active[name] {
			os.State = OutputFailedOver
		}
		if r := a.st.outputs[name]; r != nil {
			os.RecordsPerSec = r.rate()
		}
		if t := v.lastOK; t != 0 {
			tt := time.Unix(0, t)
			os.LastSuccess = &tt
		}
		if t := o.seen.lastErrAt.Load(); t != 0 {
			tt := time.Unix(0, t)
			os.LastErrorAt = &tt
			if e := o.seen.lastErr.Load(); e != nil {
				os.LastError = *e
			}
		}
		if d := o.failingFor(now); d > 0 {
			os.FailingFor = d.Round(time.Second).String()
		}
		st.Outputs = append(st.Outputs, os)
	}
	sort.Slice(st.Outputs, func(i, j int) bool { return st.Outputs[i].Name < st.Outputs[j].Name })
	return st
}

// statusEvery is how often the status tracker samples the counters.
const statusEvery = time.Second

// startStatus publishes the built flows to status, readiness and the
// watchdog, and samples their counters until the returned function is
// called.
func (a *Agent) startStatus(dlq *deadLetter) func() {
	a.dlqCount.Store(&dlq.count)
	a.publish()
	a.m.oldest.set(a)
	a.m.inflight.a.Store(a)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(statusEvery)
		defer t.Stop()
		a.sample(time.Now())
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				a.sample(now)
			}
		}
	}()
	return func() { close(stop); <-done }
}

// sourceSeen finds the source's counters (registered when the flow wired
// its emit); nil before.
func (a *Agent) sourceCounters(name string) *sourceMetrics {
	a.m.sources.mu.Lock()
	defer a.m.sources.mu.Unlock()
	for i, n := range a.m.sources.names {
		if n == name {
			return a.m.sources.srcs[i]
		}
	}
	return nil
}

// seenSource is what the status tracker knows of a source (nil before the
// source is wired to its flow). Call with a.st.mu held.
func (a *Agent) seenSource(name string) *sourceSeen {
	if s := a.st.sources[name]; s != nil {
		return s
	}
	sm := a.sourceCounters(name)
	if sm == nil {
		return nil
	}
	s := &sourceSeen{sm: sm}
	a.st.sources[name] = s
	return s
}

// publish makes a.flows what status, readiness and the watchdog see (at
// the start, and after a reload).
func (a *Agent) publish() {
	a.stMu.Lock()
	prev := a.running
	a.running = slices.Clone(a.flows)
	cfg := a.cfg
	a.runningCfg = &cfg
	a.stMu.Unlock()
	a.st.mu.Lock()
	a.st.retire(prev, a.flows)
	clear(a.st.srcNames)
	names := map[string]bool{}
	for _, fr := range a.flows {
		names[fr.cfg.Name] = true
		for _, src := range fr.sources {
			a.st.srcNames[fr.cfg.Name] = append(a.st.srcNames[fr.cfg.Name], src.Name())
		}
	}
	for name := range a.st.flows {
		if !names[name] {
			delete(a.st.flows, name)
		}
	}
	a.st.mu.Unlock()
	for _, fr := range a.flows {
		o, _ := fr.sender.activeOutput()
		fr.sender.metrics.active(fr.cfg.Output).Set(0)
		if fr.cfg.Failover != "" {
			fr.sender.metrics.active(fr.cfg.Failover).Set(0)
		}
		fr.sender.metrics.active(o.out.Name()).Set(1)
	}
}
