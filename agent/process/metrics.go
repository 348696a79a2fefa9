package process

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// collector is agent_processor_records_total, shared by the stages of
// one registry. A record that every step passed (the common case) costs its
// stage one atomic add (Stage.passed), whatever the number of steps; those
// counts are moved into the per-step in and out counters when the metric is
// collected, and when the stage closes, so a scrape sees every record
// processed before it. Records that failed or were dropped somewhere are
// counted step by step as they go.
type collector struct {
	vec    *prometheus.CounterVec
	mu     sync.Mutex
	stages map[*Stage]struct{}
}

func newCollector() *collector {
	return &collector{
		vec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_processor_records_total",
			Help: "Records through each processor of a flow, by result: in, out, failed (could not be parsed, passed unchanged), dropped (drop/keep).",
		}, []string{"flow", "step", "processor", "result"}),
		stages: map[*Stage]struct{}{},
	}
}

// registerCollector returns the registry's collector, registering one the
// first time.
func registerCollector(reg prometheus.Registerer) (*collector, error) {
	c := newCollector()
	if err := reg.Register(c); err != nil {
		are, ok := err.(prometheus.AlreadyRegisteredError)
		if !ok {
			return nil, fmt.Errorf("process: metrics: %w", err)
		}
		existing, ok := are.ExistingCollector.(*collector)
		if !ok {
			return nil, fmt.Errorf("process: metrics: agent_processor_records_total registered by another collector")
		}
		c = existing
	}
	return c, nil
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { c.vec.Describe(ch) }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	for s := range c.stages {
		s.flushPassed()
	}
	c.mu.Unlock()
	c.vec.Collect(ch)
}

func (c *collector) add(s *Stage) {
	c.mu.Lock()
	c.stages[s] = struct{}{}
	c.mu.Unlock()
}

// remove takes s out after a last flush (idempotent).
func (c *collector) remove(s *Stage) {
	c.mu.Lock()
	delete(c.stages, s)
	s.flushPassed()
	c.mu.Unlock()
}

// flushPassed moves the count of records every step passed into each
// step's in and out counters.
func (s *Stage) flushPassed() {
	n := s.passed.Swap(0)
	if n == 0 {
		return
	}
	for i := range s.steps {
		s.steps[i].in.Add(float64(n))
		s.steps[i].out.Add(float64(n))
	}
}

// countClean counts steps [0, k) one by one for a record that passed them
// and then failed or was dropped at step k.
func (s *Stage) countClean(k int) {
	for j := 0; j < k; j++ {
		s.steps[j].in.Inc()
		s.steps[j].out.Inc()
	}
}
