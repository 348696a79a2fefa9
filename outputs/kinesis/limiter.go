package kinesis

import (
	"sync"
	"time"
)

// AIMD parameters of the per-shard limiter.
const (
	// minFactor is the lowest share of its configured rate a throttled
	// shard is paced at: low enough to stop a throttling storm, high
	// enough to probe the shard again soon.
	minFactor = 1.0 / 32
	// recoverPerSecond is the share of the configured rate a shard regains
	// per second without throttling: from minFactor back to full in about
	// ten seconds.
	recoverPerSecond = 0.1
	// cutInterval spaces the rate cuts of one shard: the records of one
	// burst come back throttled together, and count as one signal.
	cutInterval = 500 * time.Millisecond
	// burstSeconds is a bucket's capacity in seconds of its rate: Kinesis
	// measures a shard's throughput per second.
	burstSeconds = 1.0
)

// demand is what one request puts to one shard.
type demand struct {
	bytes, records float64
}

// limiter paces the records put to each shard with two token buckets (bytes
// and records per second), whose rates adapt to throttling: halved when the
// shard throttles (at most once per cutInterval), regained additively while
// it does not (AIMD, as TCP's congestion control). Reservations may take a
// bucket below zero: the caller waits until the debt is paid, so concurrent
// Sends queue fairly. Safe for concurrent use.
type limiter struct {
	bytesRate, recordsRate float64 // per shard at factor 1

	mu     sync.Mutex
	shards map[string]*bucket
}

type bucket struct {
	bytes, records float64 // tokens; negative: reserved ahead
	factor         float64 // share of the configured rate, in [minFactor, 1]
	last           time.Time
	lastCut        time.Time
}

func newLimiter(percent RateLimit) *limiter {
	f := float64(percent) / 100
	return &limiter{
		bytesRate:   shardBytesPerSecond * f,
		recordsRate: shardRecordsPerSecond * f,
		shards:      make(map[string]*bucket),
	}
}

// get returns shard's bucket, refilled up to now. l.mu is held.
func (l *limiter) get(shard string, now time.Time) *bucket {
	b := l.shards[shard]
	if b == nil {
		b = &bucket{factor: 1, last: now}
		b.bytes, b.records = l.bytesRate*burstSeconds, l.recordsRate*burstSeconds
		l.shards[shard] = b
		return b
	}
	dt := now.Sub(b.last).Seconds()
	if dt <= 0 {
		return b
	}
	b.last = now
	// Refill at the rate in force, then recover some rate.
	b.bytes = min(b.bytes+dt*l.bytesRate*b.factor, l.bytesRate*b.factor*burstSeconds)
	b.records = min(b.records+dt*l.recordsRate*b.factor, l.recordsRate*b.factor*burstSeconds)
	b.factor = min(1, b.factor+dt*recoverPerSecond)
	return b
}

// reserve takes the tokens of one request's demands per shard and returns
// how long the caller must wait before sending it: the longest debt of the
// shards it puts to.
func (l *limiter) reserve(now time.Time, demands map[string]demand) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait float64
	for shard, d := range demands {
		b := l.get(shard, now)
		b.bytes -= d.bytes
		b.records -= d.records
		if b.bytes < 0 {
			wait = max(wait, -b.bytes/(l.bytesRate*b.factor))
		}
		if b.records < 0 {
			wait = max(wait, -b.records/(l.recordsRate*b.factor))
		}
	}
	return time.Duration(wait * float64(time.Second))
}

// throttled reports that shard refused records for its throughput: its rate
// is halved (once per cutInterval) and its saved-up burst is dropped.
func (l *limiter) throttled(shard string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.get(shard, now)
	if !b.lastCut.IsZero() && now.Sub(b.lastCut) < cutInterval {
		return
	}
	b.lastCut = now
	b.factor = max(minFactor, b.factor/2)
	b.bytes = min(b.bytes, 0)
	b.records = min(b.records, 0)
}

// factor returns shard's current share of its configured rate (1 for a
// shard not seen yet).
func (l *limiter) factor(shard string) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.shards[shard]; b != nil {
		return b.factor
	}
	return 1
}

// retain forgets the shards not in keep (closed by a reshard).
func (l *limiter) retain(keep map[string]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := range l.shards {
		if !keep[id] {
			delete(l.shards, id)
		}
	}
}
