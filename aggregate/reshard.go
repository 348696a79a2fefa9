package aggregate

import (
	"errors"
	"fmt"
	"time"
)

// errStopEach ends a walk over an aggregate's records early.
var errStopEach = errors.New("aggregate: stop")

// This file serves outputs that send aggregates built against an older shard
// map (from the spool, or in flight during a reshard): the KCL drops a whole
// aggregate when one of its sub-records lies outside the hash range of the
// shard it was read from, so such an aggregate must be split before it is
// sent.

// Contains reports whether shard s's range holds h.
func (s Shard) Contains(h HashKey) bool {
	return s.Start.Cmp(h) <= 0 && h.Cmp(s.End) <= 0
}

// RouteKeys returns the index of the shard Kinesis routes a record with these
// keys to: by the explicit hash key when it is not empty, else by the MD5 of
// the partition key. Errors wrap ErrExplicitHashKey or ErrNoShard.
func (m *ShardMap) RouteKeys(partitionKey, explicitHashKey string) (int, error) {
	var h HashKey
	if explicitHashKey != "" {
		var err error
		if h, err = ParseHashKey(explicitHashKey); err != nil {
			return 0, err
		}
	} else {
		h = PartitionKeyHash(partitionKey)
	}
	i, ok := m.Lookup(h)
	if !ok {
		return 0, fmt.Errorf("%w: %s", ErrNoShard, h)
	}
	return i, nil
}

// Route returns the index of the shard Kinesis routes the Kinesis record a
// to (see RouteKeys).
func (m *ShardMap) Route(a *Aggregate) (int, error) {
	return m.RouteKeys(a.PartitionKey, a.ExplicitHashKey)
}

// Covers reports whether every user record of a lies in the hash range of
// shard i of m: whether a KCL reading a from that shard keeps all of it. An
// aggregate whose BuiltFor range lies in the shard's is covered without its
// records being read. A
// plain record is covered when it routes to shard i. A sub-record's hash key
// is its explicit hash key, or the MD5 of its partition key (each distinct
// key of the aggregate's tables is hashed once). Errors wrap ErrMalformed or
// ErrExplicitHashKey (a malformed sub-record key). Covers does not allocate
// for aggregates of up to 64 distinct keys.
func (m *ShardMap) Covers(a *Aggregate, i int) (bool, error) {
	s := m.shards[i]
	if a.Aggregated && a.BuiltFor != nil && s.Start.Cmp(a.BuiltFor.Start) <= 0 && a.BuiltFor.End.Cmp(s.End) <= 0 {
		return true, nil
	}
	if !a.Aggregated {
		j, err := m.Route(a)
		if err != nil {
			return false, nil // a record in a gap (or with a bad key) is covered by no shard
		}
		return j == i, nil
	}
	t := getTables()
	defer putTables(t)
	n, err := t.parse(a.Body)
	if err != nil {
		return false, err
	}
	if a.Count > 0 && n != a.Count {
		return false, fmt.Errorf("%w: %d records, the aggregate says %d", ErrMalformed, n, a.Count)
	}
	body := a.Body
	if tablesIn(t, body, s) {
		return true, nil
	}
	// Per table entry: 0 not checked yet, 1 inside s, 2 outside.
	var pkBuf, ehkBuf [64]uint8
	pkState, ehkState := pkBuf[:0], ehkBuf[:0]
	if len(t.pk) <= len(pkBuf) {
		pkState = pkBuf[:len(t.pk)]
	} else {
		pkState = make([]uint8, len(t.pk))
	}
	if len(t.ehk) <= len(ehkBuf) {
		ehkState = ehkBuf[:len(t.ehk)]
	} else {
		ehkState = make([]uint8, len(t.ehk))
	}
	var keyErr error
	covered := true
	err = t.each(body, func(r rawRecord) error {
		var st *uint8
		var h HashKey
		if r.hasEHK {
			st = &ehkState[r.ehkIdx]
			if *st == 0 {
				sp := t.ehk[r.ehkIdx]
				if h, keyErr = ParseHashKey(string(body[sp.off:sp.end])); keyErr != nil {
					return errStopEach
				}
			}
		} else {
			st = &pkState[r.pkIdx]
			if *st == 0 {
				sp := t.pk[r.pkIdx]
				h = PartitionKeyHash(string(body[sp.off:sp.end]))
			}
		}
		if *st == 0 {
			*st = 2
			if s.Contains(h) {
				*st = 1
			}
		}
		if *st == 2 {
			covered = false
			return errStopEach
		}
		return nil
	})
	switch {
	case keyErr != nil:
		return false, keyErr
	case err != nil && err != errStopEach:
		return false, err
	}
	return covered, nil
}

// tablesIn reports whether every key of the tables of body lies in s: then
// every record does, whichever keys it uses (parse checked that their
// indexes are inside the tables), and Covers need not walk the records
// again. A key outside s, or an explicit hash key that does not parse,
// says nothing of the records (it may be unused): false.
func tablesIn(t *tables, body []byte, s Shard) bool {
	for _, sp := range t.pk {
		if !s.Contains(PartitionKeyHash(string(body[sp.off:sp.end]))) {
			return false
		}
	}
	for _, sp := range t.ehk {
		h, err := ParseHashKey(string(body[sp.off:sp.end]))
		if err != nil || !s.Contains(h) {
			return false
		}
	}
	return true
}

// Split re-aggregates the user records of a against m, grouping them by the
// shard each one routes to, as a Builder with map m would, and passes each
// resulting Kinesis record to emit (valid only during the call, as with the
// Builder). The records of one shard keep their order. A plain record is
// passed on as it is. Errors wrap ErrMalformed, the Builder's errors for a
// bad sub-record (ErrPartitionKey, ErrExplicitHashKey, ErrNoShard when m has
// gaps), or are emit's. A caller splitting many aggregates against one map
// reuses a Splitter instead.
func Split(a *Aggregate, m *ShardMap, emit func(*Aggregate) error) error {
	if !a.Aggregated {
		return emit(a)
	}
	s, err := NewSplitter(m)
	if err != nil {
		return err
	}
	return s.Split(a, emit)
}

// Splitter splits aggregates against one shard map (see Split), reusing one
// Builder and its buffers. It is not safe for concurrent use.
type Splitter struct {
	b *Builder
}

// splitMaxRecords bounds nothing in practice: a piece holds at most the
// records of the aggregate it comes from.
const splitMaxRecords = 1 << 30

// NewSplitter returns a Splitter for m. Its Builder takes records and
// pieces up to MaxLargeRecordSize: a piece is a part of one aggregate, so
// it is never larger than the aggregate itself.
func NewSplitter(m *ShardMap) (*Splitter, error) {
	b, err := NewBuilder(Config{MaxBytes: MaxLargeRecordSize, RecordLimit: MaxLargeRecordSize, MaxRecords: splitMaxRecords}, m)
	if err != nil {
		return nil, err
	}
	return &Splitter{b: b}, nil
}

// Map returns the shard map s splits against.
func (s *Splitter) Map() *ShardMap { return s.b.shards }

// Split is the package's Split with s's map. After an error the Splitter
// stays usable.
func (s *Splitter) Split(a *Aggregate, emit func(*Aggregate) error) error {
	if !a.Aggregated {
		return emit(a)
	}
	out := func(_ int, agg *Aggregate) error { return emit(agg) }
	var now time.Time
	err := ForEach(a, func(pk, ehk, data []byte) error {
		_, err := s.b.Add(Record{Data: data, PartitionKey: string(pk), ExplicitHashKey: string(ehk)}, now, out)
		return err
	})
	if err == nil {
		return s.b.FlushAll(out)
	}
	// Drop what was added: the next aggregate starts afresh.
	_ = s.b.FlushAll(func(int, *Aggregate) error { return nil })
	return err
}
