package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kplagent/agent/outputs"
)

// A send that hangs (an HTTP server that took the connection and never
// answers, a Kafka broker that does not reply) looks like nothing at all
// until its timeout ends it: no error yet, no success. The sender notes
// when each Send began (inflight), so status, metrics and the log can show
// a send that has waited long for its answer.

// stallAfterMax is the longest a send may wait for its answer before its
// output is shown stalled: well above a healthy send (milliseconds to a few
// seconds), below the outputs' default timeouts (30 s). An output with a
// timeout of its own (outputs.SendTimeouter) is stalled after half of it
// when that is sooner.
const stallAfterMax = 10 * time.Second

// stallWarnEvery rate-limits the warning about a stalled output.
const stallWarnEvery = time.Minute

// inflight are the sends in flight to one output from one sender, by when
// each began.
type inflight struct {
	mu     sync.Mutex
	next   uint64
	starts map[uint64]int64 // unix nanos
}

// begin notes a send beginning at t; end(token) when it returned.
func (f *inflight) begin(t time.Time) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.starts == nil {
		f.starts = map[uint64]int64{}
	}
	f.next++
	f.starts[f.next] = t.UnixNano()
	return f.next
}

func (f *inflight) end(token uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.starts, token)
}

// oldest returns how many sends are in flight and when the oldest began
// (unix nanos; 0 with none).
func (f *inflight) oldest() (n int, since int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.starts {
		if since == 0 || t < since {
			since = t
		}
	}
	return len(f.starts), since
}

// stallAfter is how long a send to o may wait for its answer before o is
// shown stalled: half the output's own timeout, at most stallAfterMax.
func stallAfter(o outputs.Output) time.Duration {
	if t, ok := o.(outputs.SendTimeouter); ok && t.SendTimeout() > 0 {
		return min(t.SendTimeout()/2, stallAfterMax)
	}
	return stallAfterMax
}

// sending is what the senders of one output have in flight.
type sending struct {
	n      int
	since  int64 // unix nanos of the oldest; 0 with none
	stall  time.Duration
	output outputs.Output
	// noAnswer is the earliest noAnswerSince of its senders (0: none
	// waits for an answer after a timeout).
	noAnswer int64
}

// add counts o's sends in flight.
func (s *sending) add(o *outputState) {
	n, since := o.flight.oldest()
	s.n += n
	if since != 0 && (s.since == 0 || since < s.since) {
		s.since = since
	}
	if s.output == nil {
		s.output, s.stall = o.out, stallAfter(o.out)
	}
	if na := o.seen.noAnswerSince.Load(); na != 0 && (s.noAnswer == 0 || na < s.noAnswer) {
		s.noAnswer = na
	}
}

// stalledSince is since when the destination has not answered at now
// (unix nanos; 0: it answers): the oldest send in flight when it has
// waited past the threshold, or the first of the sends that timed out
// since its last answer (between retries no send is in flight, but the
// destination still has not answered).
func (s *sending) stalledSince(now time.Time) int64 {
	start := int64(0)
	if s.stalled(now) {
		start = s.since
	}
	if s.noAnswer != 0 && (start == 0 || s.noAnswer < start) {
		start = s.noAnswer
	}
	return start
}

// timedOut reports whether a send ended without the destination's answer
// (its timeout, or a network timeout).
func timedOut(err error) bool {
	var te interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &te) && te.Timeout())
}

// age is how long the oldest send in flight has waited at now (0: none).
func (s *sending) age(now time.Time) time.Duration {
	if s.since == 0 {
		return 0
	}
	return max(now.Sub(time.Unix(0, s.since)), 0)
}

// stalled reports whether the oldest send has waited longer than the
// output's threshold.
func (s *sending) stalled(now time.Time) bool {
	return s.since != 0 && s.age(now) > s.stall
}

// roundAge rounds d to the second, or below a second to the millisecond.
func roundAge(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}

// sendingByOutput gathers the sends in flight of the running senders, by
// output name.
func (a *Agent) sendingByOutput() map[string]*sending {
	out := map[string]*sending{}
	for _, fr := range a.runtimeFlows() {
		for _, o := range fr.sender.outputStates() {
			s := out[o.out.Name()]
			if s == nil {
				s = &sending{}
				out[o.out.Name()] = s
			}
			s.add(o)
		}
	}
	return out
}

// warnStalled logs, at most once per stallWarnEvery per output, the outputs
// whose oldest send has waited longer than their threshold: without it a
// destination that does not answer is silent until the send's timeout.
// Called by the status sampler with a.st.mu held.
func (a *Agent) warnStalled(now time.Time, by map[string]*sending) {
	for name, s := range by {
		if !s.stalled(now) {
			continue
		}
		if last, ok := a.st.stallWarned[name]; ok && now.Sub(last) < stallWarnEvery {
			continue
		}
		a.st.stallWarned[name] = now
		args := []any{"component", "sender", "output", name, "waiting", s.age(now).Round(time.Second).String(), "sends_in_flight", s.n}
		if t, ok := s.output.(outputs.SendTimeouter); ok && t.SendTimeout() > 0 {
			args = append(args, "timeout", t.SendTimeout().String())
		}
		if c, ok := s.output.(outputs.WaitCauser); ok {
			if err := c.WaitCause(); err != nil {
				args = append(args, "cause", err.Error())
			}
		}
		a.log.Warn("the destination has not answered a send for long; it is still waiting (agent status shows the output stalled)", args...)
	}
}

// inflightCollector exposes, per output, the sends in flight and the age
// of the oldest, computed at scrape time.
type inflightCollector struct {
	n, age *prometheus.Desc
	a      atomic.Pointer[Agent]
}

func newInflightCollector() *inflightCollector {
	return &inflightCollector{
		n: prometheus.NewDesc("agent_output_sends_in_flight", "Sends to the output waiting for the destination's answer now.", []string{"output"}, nil),
		age: prometheus.NewDesc("agent_output_oldest_send_age_seconds",
			"How long the oldest send in flight to the output has waited for the destination's answer (0 with none in flight).", []string{"output"}, nil),
	}
}

func (c *inflightCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.n; ch <- c.age }

func (c *inflightCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a.Load()
	if a == nil {
		return
	}
	now := time.Now()
	for name, s := range a.sendingByOutput() {
		ch <- prometheus.MustNewConstMetric(c.n, prometheus.GaugeValue, float64(s.n), name)
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, s.age(now).Seconds(), name)
	}
}

// StalledOutput is an output whose destination does not answer: its
// oldest send in flight has waited longer than its stall threshold (see
// OutputStalled), or its sends have timed out since its last answer
// (between two attempts its state is retrying, but it still does not
// answer). It is shown, not failed: the sends are retried until it
// answers.
type StalledOutput struct {
	Name    string
	Since   time.Time     // when the first send without an answer began
	Waiting time.Duration // how long ago that was
	Sends   int           // sends in flight to it now
}

// String says it for a person: "output web stalled: no answer for 42s
// (since 14:31:05 UTC, 2 sends waiting)".
func (s StalledOutput) String() string {
	sends := "1 send waiting"
	if s.Sends != 1 {
		sends = fmt.Sprintf("%d sends waiting", s.Sends) // 0 between two attempts
	}
	return fmt.Sprintf("output %s stalled: no answer for %s (since %s, %s)",
		s.Name, s.Waiting.Round(time.Second), s.Since.UTC().Format("15:04:05 MST"), sends)
}

// Stalled lists the outputs stalled now, by name. Safe to call at any
// time, from any goroutine.
func (a *Agent) Stalled() []StalledOutput { return a.stalled(time.Now()) }

func (a *Agent) stalled(now time.Time) []StalledOutput {
	var out []StalledOutput
	for name, s := range a.sendingByOutput() {
		if since := s.stalledSince(now); since != 0 {
			t := time.Unix(0, since)
			out = append(out, StalledOutput{Name: name, Since: t, Waiting: max(now.Sub(t), 0), Sends: s.n})
		}
	}
	slices.SortFunc(out, func(x, y StalledOutput) int { return strings.Compare(x.Name, y.Name) })
	return out
}
