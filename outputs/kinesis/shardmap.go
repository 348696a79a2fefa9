package kinesis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/kplagent/agent/aggregate"
)

// Triggered refreshes (a record landed on another shard than predicted) run
// at once, within the Send that saw the mismatch, but are spaced by a backoff, so that a reshard, during which ListShards may lag
// behind PutRecords, does not become a ListShards storm (ListShards is
// limited to 1000 calls per second per account, shared with every producer).
const (
	minTriggerGap = time.Second
	maxTriggerGap = 30 * time.Second
	// listShardsPage is ListShards' MaxResults (its maximum is 10000).
	listShardsPage = 1000
)

// shardMaps holds an output's current shard map and refreshes it.
type shardMaps struct {
	mu      sync.Mutex
	cur     *aggregate.ShardMap
	version uint64        // 0: no map yet; +1 on each change
	changed chan struct{} // closed when the map next changes
	fetched time.Time     // of the last successful ListShards

	refreshing bool      // a background refresh runs
	nextTrig   time.Time // no triggered refresh before
	trigGap    time.Duration

	fetchMu sync.Mutex // one synchronous first fetch at a time
}

// ShardMap returns the stream's current map of open shards, fetching it with
// ListShards on first use (the flow calls it before aggregating its first
// record). Later calls return the cached map at once; it is refreshed in the
// background every shard_map_refresh and when PutRecords reports a record on
// another shard than predicted. Safe for concurrent use.
func (o *Output) ShardMap(ctx context.Context) (*aggregate.ShardMap, error) {
	return o.shardMap(ctx, waitUnread)
}

// shardMap is ShardMap; w says where the records wait while the first fetch
// fails: unread for a flow (ShardMap), in the spool for a send.
func (o *Output) shardMap(ctx context.Context, w waiting) (*aggregate.ShardMap, error) {
	o.maps.mu.Lock()
	m := o.maps.cur
	o.maps.mu.Unlock()
	if m != nil {
		return m, nil
	}
	o.maps.fetchMu.Lock()
	defer o.maps.fetchMu.Unlock()
	o.maps.mu.Lock()
	m = o.maps.cur
	o.maps.mu.Unlock()
	if m != nil {
		return m, nil
	}
	if err := o.refresh(ctx, w); err != nil {
		return nil, err
	}
	o.maps.mu.Lock()
	defer o.maps.mu.Unlock()
	return o.maps.cur, nil
}

// ShardMapVersion returns the number of the current shard map: 0 before the
// first one, then incremented each time a refresh finds the open shards
// changed. A flow compares it with the version its Builder was built against
// (one atomic-cheap call per batch) and rebuilds when it differs.
func (o *Output) ShardMapVersion() uint64 {
	o.maps.mu.Lock()
	defer o.maps.mu.Unlock()
	return o.maps.version
}

// ShardMapChanged returns a channel closed when the shard map next changes
// (a new version), for flows that select on it.
func (o *Output) ShardMapChanged() <-chan struct{} {
	o.maps.mu.Lock()
	defer o.maps.mu.Unlock()
	return o.maps.changed
}

// current returns the map Send routes against, fetching the first one, and
// starts a background refresh when the map is older than shard_map_refresh.
func (o *Output) current(ctx context.Context) (*aggregate.ShardMap, error) {
	m, err := o.shardMap(ctx, waitSpooled) // the records a send did not deliver are spooled
	if err != nil {
		return nil, err
	}
	o.maps.mu.Lock()
	stale := o.now().Sub(o.maps.fetched) >= o.cfg.ShardMapRefresh
	o.maps.mu.Unlock()
	if stale {
		o.refreshInBackground()
	}
	return m, nil
}

// RefreshShardMap fetches the shard map now (ListShards) and installs it if
// it changed. The output refreshes by itself; this is for a flow that knows
// better (e.g. an operator's reshard command).
func (o *Output) RefreshShardMap(ctx context.Context) error {
	o.maps.fetchMu.Lock()
	defer o.maps.fetchMu.Unlock()
	return o.refresh(ctx, waitSpooled)
}

// refreshAfterMismatch refreshes the map at once after a record landed on
// another shard than seen predicted, unless the map changed since seen or
// the trigger backoff holds, and returns the newest map.
func (o *Output) refreshAfterMismatch(ctx context.Context, seen *aggregate.ShardMap) *aggregate.ShardMap {
	o.maps.fetchMu.Lock()
	defer o.maps.fetchMu.Unlock()
	o.maps.mu.Lock()
	now := o.now()
	if o.maps.cur != seen || now.Before(o.maps.nextTrig) {
		defer o.maps.mu.Unlock()
		return o.maps.cur
	}
	o.maps.trigGap = min(maxTriggerGap, max(minTriggerGap, 2*o.maps.trigGap))
	o.maps.nextTrig = now.Add(o.maps.trigGap)
	o.maps.mu.Unlock()
	if err := o.refresh(ctx, waitSpooled); err != nil && ctx.Err() == nil {
		o.warnEvery(&o.lastRefreshWarn, "shard map refresh failed; the current map stays in use", "error", err)
	}
	o.maps.mu.Lock()
	defer o.maps.mu.Unlock()
	return o.maps.cur
}

// refreshInBackground starts a periodic refresh unless one runs.
func (o *Output) refreshInBackground() {
	o.maps.mu.Lock()
	defer o.maps.mu.Unlock()
	if o.maps.refreshing || o.closing.Load() {
		return
	}
	o.maps.refreshing = true
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		err := o.refresh(o.bgCtx, waitSpooled)
		if err != nil && o.bgCtx.Err() == nil {
			o.warnEvery(&o.lastRefreshWarn, "shard map refresh failed; the current map stays in use", "error", err)
		}
		o.maps.mu.Lock()
		o.maps.refreshing = false
		if err != nil {
			// Try again no sooner than a trigger gap, not at every Send.
			o.maps.fetched = o.now().Add(-o.cfg.ShardMapRefresh + max(o.maps.trigGap, minTriggerGap))
		}
		o.maps.mu.Unlock()
	}()
}

// refresh lists the open shards and installs the map if it changed. w says
// where the records wait if it fails.
func (o *Output) refresh(ctx context.Context, w waiting) error {
	m, err := o.listShards(ctx, w)
	if err != nil {
		o.metrics.refreshes.WithLabelValues("error").Inc()
		return err
	}
	o.maps.mu.Lock()
	defer o.maps.mu.Unlock()
	o.maps.fetched = o.now()
	if o.maps.cur != nil && sameShards(o.maps.cur, m) {
		o.metrics.refreshes.WithLabelValues("unchanged").Inc()
		return nil
	}
	first := o.maps.cur == nil
	o.maps.cur = m
	o.maps.version++
	close(o.maps.changed)
	o.maps.changed = make(chan struct{})
	o.maps.trigGap = 0 // the next mismatch may refresh at once
	o.maps.nextTrig = time.Time{}
	o.metrics.refreshes.WithLabelValues("changed").Inc()
	o.metrics.shards.Set(float64(m.Len()))
	keep := make(map[string]bool, m.Len())
	for i := range m.Len() {
		keep[m.Shard(i).ID] = true
	}
	if o.limiter != nil {
		o.limiter.retain(keep)
	}
	if first {
		o.log.Info("shard map loaded", "shards", m.Len())
	} else {
		o.log.Info("shard map changed (reshard)", "shards", m.Len(), "version", o.maps.version)
	}
	return nil
}

// listShards returns the map of the stream's open shards (ListShards,
// paginated). Closed shards (with an ending sequence number: the parents of
// a split or merge) are left out. It fails unless the open shards cover the
// whole hash key space, as they do once a reshard is complete.
func (o *Output) listShards(ctx context.Context, w waiting) (*aggregate.ShardMap, error) {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	var shards []aggregate.Shard
	in := &kinesis.ListShardsInput{StreamName: aws.String(o.cfg.Stream), MaxResults: aws.Int32(listShardsPage)}
	for page := 0; ; page++ {
		out, err := o.client.ListShards(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("kinesis: ListShards %s: %w", o.cfg.Stream, o.describeError(err, w))
		}
		for _, s := range out.Shards {
			if s.SequenceNumberRange != nil && s.SequenceNumberRange.EndingSequenceNumber != nil {
				continue // closed
			}
			if s.ShardId == nil || s.HashKeyRange == nil || s.HashKeyRange.StartingHashKey == nil || s.HashKeyRange.EndingHashKey == nil {
				return nil, fmt.Errorf("kinesis: ListShards %s: a shard without id or hash key range", o.cfg.Stream)
			}
			start, err1 := aggregate.ParseHashKey(*s.HashKeyRange.StartingHashKey)
			end, err2 := aggregate.ParseHashKey(*s.HashKeyRange.EndingHashKey)
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("kinesis: ListShards %s: shard %s: %w", o.cfg.Stream, *s.ShardId, err)
			}
			shards = append(shards, aggregate.Shard{ID: *s.ShardId, Start: start, End: end})
		}
		if out.NextToken == nil || *out.NextToken == "" {
			break
		}
		if page > 1000 {
			return nil, fmt.Errorf("kinesis: ListShards %s: more than 1000 pages", o.cfg.Stream)
		}
		// With a NextToken, the stream must not be named.
		in = &kinesis.ListShardsInput{NextToken: out.NextToken, MaxResults: aws.Int32(listShardsPage)}
	}
	if err := checkCoverage(shards); err != nil {
		return nil, fmt.Errorf("kinesis: ListShards %s: %w", o.cfg.Stream, err)
	}
	m, err := aggregate.NewShardMap(shards)
	if err != nil {
		return nil, fmt.Errorf("kinesis: ListShards %s: %w", o.cfg.Stream, err)
	}
	return m, nil
}

// checkCoverage reports an error unless shards, without overlap, cover every
// hash key from 0 to 2^128-1 (a map with gaps would refuse records).
func checkCoverage(shards []aggregate.Shard) error {
	if len(shards) == 0 {
		return errors.New("no open shards")
	}
	s := slices.Clone(shards)
	slices.SortFunc(s, func(a, b aggregate.Shard) int { return a.Start.Cmp(b.Start) })
	if s[0].Start != (aggregate.HashKey{}) {
		return fmt.Errorf("the open shards do not cover hash keys from 0 (a reshard in progress?)")
	}
	for i := 1; i < len(s); i++ {
		next := s[i-1].End
		if next == aggregate.MaxHashKey || s[i].Start != inc(next) {
			return fmt.Errorf("the open shards %s and %s do not meet (a reshard in progress?)", s[i-1].ID, s[i].ID)
		}
	}
	if s[len(s)-1].End != aggregate.MaxHashKey {
		return fmt.Errorf("the open shards do not cover hash keys up to 2^128-1 (a reshard in progress?)")
	}
	return nil
}

func inc(h aggregate.HashKey) aggregate.HashKey {
	h.Lo++
	if h.Lo == 0 {
		h.Hi++
	}
	return h
}

// sameShards reports whether a and b have the same shards.
func sameShards(a, b *aggregate.ShardMap) bool {
	if a.Len() != b.Len() {
		return false
	}
	for i := range a.Len() {
		if a.Shard(i) != b.Shard(i) {
			return false
		}
	}
	return true
}
