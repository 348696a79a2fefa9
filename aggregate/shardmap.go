package aggregate

import (
	"errors"
	"fmt"
	"slices"
)

// Shard is one shard of a stream: the inclusive hash-key range it owns, as
// ListShards reports it (HashKeyRange.StartingHashKey/EndingHashKey).
type Shard struct {
	ID         string
	Start, End HashKey // inclusive
}

// ShardMap maps hash keys to the shards of a stream. It is immutable and safe
// for concurrent use.
type ShardMap struct {
	shards []Shard // sorted by Start, non-overlapping
}

// NewShardMap builds a map from the open shards of a stream, in any order.
// Ranges must not overlap: pass only open shards (ListShards also returns
// closed parents after a reshard). Gaps are allowed, but a record whose hash
// key falls in one is refused with ErrNoShard. Shard indexes (Lookup, Shard,
// the Builder's groups) follow the order of Start.
func NewShardMap(shards []Shard) (*ShardMap, error) {
	if len(shards) == 0 {
		return nil, errors.New("aggregate: shard map: no shards")
	}
	s := slices.Clone(shards)
	slices.SortFunc(s, func(a, b Shard) int { return a.Start.Cmp(b.Start) })
	for i := range s {
		if s[i].End.Cmp(s[i].Start) < 0 {
			return nil, fmt.Errorf("aggregate: shard map: shard %q: end %s is before start %s", s[i].ID, s[i].End, s[i].Start)
		}
		if i > 0 && s[i].Start.Cmp(s[i-1].End) <= 0 {
			return nil, fmt.Errorf("aggregate: shard map: shards %q and %q overlap (pass open shards only)", s[i-1].ID, s[i].ID)
		}
	}
	return &ShardMap{shards: s}, nil
}

// Len returns the number of shards.
func (m *ShardMap) Len() int { return len(m.shards) }

// Shard returns the shard at index i, in [0, Len()).
func (m *ShardMap) Shard(i int) Shard { return m.shards[i] }

// Lookup returns the index of the shard whose range holds h, or false when h
// falls in a gap between shards.
func (m *ShardMap) Lookup(h HashKey) (int, bool) {
	// The last shard starting at or before h.
	lo, hi := 0, len(m.shards)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if m.shards[mid].Start.Cmp(h) <= 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	i := lo - 1
	if i < 0 || m.shards[i].End.Cmp(h) < 0 {
		return 0, false
	}
	return i, true
}
