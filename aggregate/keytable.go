package aggregate

import "google.golang.org/protobuf/encoding/protowire"

// keyTable is one de-duplicated key table of an open aggregate (partition
// keys or explicit hash keys): the distinct keys in index order and their
// encoded AggregatedRecord fields. A few keys are searched linearly, more
// through a map; both keep their memory across aggregates.
type keyTable struct {
	field protowire.Number
	keys  []string
	index map[string]uint32 // nil until the table outgrows linearKeys once
	enc   []byte            // the table's encoded fields, in index order
	last  uint32            // index of the last key found or added
	peak  int               // the most keys index has held (its memory)
}

// weigh estimates the table's memory: its encoding, a string header per
// key, and about 48 bytes per entry its map has held.
func (t *keyTable) weigh() int {
	return cap(t.enc) + 16*cap(t.keys) + 48*t.peak
}

// linearKeys is how many keys are searched linearly before a map pays off.
const linearKeys = 8

// lookup returns the index of k in the table.
func (t *keyTable) lookup(k string) (uint32, bool) {
	if len(t.keys) == 0 {
		return 0, false
	}
	if t.keys[t.last] == k {
		return t.last, true
	}
	if t.index != nil {
		i, ok := t.index[k]
		if ok {
			t.last = i
		}
		return i, ok
	}
	for i, s := range t.keys {
		if s == k {
			t.last = uint32(i)
			return uint32(i), true
		}
	}
	return 0, false
}

// growth is the weight (see weigh) reserve(k) adds.
func (t *keyTable) growth(k string) int {
	n := 0
	if need := len(t.enc) + keyFieldSize(k) + 8; need > cap(t.enc) {
		n += max(need, 2*cap(t.enc), 32) - cap(t.enc)
	}
	if len(t.keys) == cap(t.keys) {
		n += 16 * (max(2*cap(t.keys), 2) - cap(t.keys))
	}
	if (t.index != nil || len(t.keys)+1 > linearKeys) && len(t.keys)+1 > t.peak {
		n += 48 * (len(t.keys) + 1 - t.peak)
	}
	return n
}

// reserve makes room for adding k, growing the table's slices by as much as
// growth tells (add then does not allocate them), and returns growth(k).
func (t *keyTable) reserve(k string) int {
	n := t.growth(k)
	if need := len(t.enc) + keyFieldSize(k) + 8; need > cap(t.enc) {
		enc := make([]byte, len(t.enc), max(need, 2*cap(t.enc), 32))
		copy(enc, t.enc)
		t.enc = enc
	}
	if len(t.keys) == cap(t.keys) {
		keys := make([]string, len(t.keys), max(2*cap(t.keys), 2))
		copy(keys, t.keys)
		t.keys = keys
	}
	return n
}

// next returns the index the next added key gets.
func (t *keyTable) next() uint32 { return uint32(len(t.keys)) }

// add appends k, which lookup did not find, and returns its index.
func (t *keyTable) add(k string) uint32 {
	i := uint32(len(t.keys))
	t.keys = append(t.keys, k)
	switch {
	case t.index != nil:
		t.index[k] = i
		t.peak = max(t.peak, len(t.keys))
	case len(t.keys) > linearKeys:
		t.index = make(map[string]uint32, 2*len(t.keys))
		for j, s := range t.keys {
			t.index[s] = uint32(j)
		}
		t.peak = max(t.peak, len(t.keys))
	}
	t.enc = protowire.AppendTag(t.enc, t.field, protowire.BytesType)
	t.enc = protowire.AppendString(t.enc, k)
	t.last = i
	return i
}

// reset empties the table, keeping its memory.
func (t *keyTable) reset() {
	clear(t.keys) // drop the references to the callers' strings
	t.keys = t.keys[:0]
	if t.index != nil {
		clear(t.index)
	}
	t.enc = t.enc[:0]
	t.last = 0
}

// keyFieldSize is the encoded size of a key table entry.
func keyFieldSize(k string) int {
	return 1 + protowire.SizeBytes(len(k))
}
