package aggregate

import (
	"fmt"
	"hash/maphash"
	"unsafe"
)

// route is where a record goes: its group and what is known of its keys.
type route struct {
	group  int32
	hash   HashKey // the record's hash key, when hashOK
	hashOK bool
	cached *keyCacheEntry // its partition key's cache entry (with a shard map and no explicit hash key)
}

// keyCacheSets is the number of sets of the partition key cache, two
// entries each: 8192 keys, enough for the hot keys of most streams, in about
// 400 KiB (a CPU's L2 cache). Streams with more distinct keys pay an MD5 per
// record for shard prediction, as the KPL does.
const keyCacheSets = 4096

// keyCacheEntry caches what a partition key costs to work out: validation,
// MD5 and shard lookup (with a shard map), and the open aggregate it was
// last added to and its index in that aggregate's key table.
type keyCacheEntry struct {
	pk     string
	sum    uint64  // maphash of pk: most misses are told without reading pk's bytes
	hash   HashKey // with a shard map...
	hashOK bool    // ...false when the map needs no hash (wholeSpan)
	shard  int32   // the key's group: its shard, or without a shard map the group it was last added to
	pkIdx  uint32  // the key's index in the table of that group's aggregate...
	epoch  uint64  // ...if that aggregate is still the one numbered epoch
}

// routeByShard routes a record by the shard its hash key predicts.
func (b *Builder) routeByShard(pk, ehk string) (route, error) {
	if ehk != "" {
		h, err := b.parseEHK(ehk)
		if err != nil {
			return route{}, err
		}
		if err := b.validatePK(pk); err != nil {
			return route{}, err
		}
		shard, ok := b.shards.Lookup(h)
		if !ok {
			return route{}, fmt.Errorf("%w: explicit hash key %s", ErrNoShard, h)
		}
		return route{group: int32(shard), hash: h, hashOK: true}, nil
	}

	cached, set := b.cacheFind(pk)
	if cached != nil {
		return route{group: cached.shard, hash: cached.hash, hashOK: cached.hashOK, cached: cached}, nil
	}
	if err := ValidatePartitionKey(pk); err != nil {
		return route{}, err
	}
	e := keyCacheEntry{pk: pk, sum: b.sum}
	if !b.wholeSpan {
		e.hash, e.hashOK = PartitionKeyHash(pk), true
		shard, ok := b.shards.Lookup(e.hash)
		if !ok {
			return route{}, fmt.Errorf("%w: %s, the hash of partition key %q", ErrNoShard, e.hash, truncateForError(pk))
		}
		e.shard = int32(shard)
	}
	// The newest key takes the first entry of its set; the one it displaces
	// the second.
	set[1], set[0] = set[0], e
	return route{group: e.shard, hash: e.hash, hashOK: e.hashOK, cached: &set[0]}, nil
}

// routeByKey routes a record without a shard map: to the group bound to its
// explicit hash key if it has one, else to its partition key's, binding a
// free group if none is, and closing the oldest aggregate first if no group
// is free.
func (b *Builder) routeByKey(pk, ehk string, emit func(int, *Aggregate) error) (route, error) {
	var h HashKey
	if ehk != "" {
		var err error
		if h, err = b.parseEHK(ehk); err != nil {
			return route{}, err
		}
		if err := b.validatePK(pk); err != nil {
			return route{}, err
		}
		if gi, ok := b.byEHK[h]; ok {
			return route{group: gi, hash: h, hashOK: true}, nil
		}
	} else {
		if pk == b.lastPK && b.lastPKGroup != none {
			return route{group: b.lastPKGroup}, nil
		}
		if gi, ok := b.byPK[pk]; ok {
			b.lastPK, b.lastPKGroup = pk, gi
			return route{group: gi}, nil
		}
		if err := b.validatePK(pk); err != nil {
			return route{}, err
		}
	}
	if len(b.free) == 0 {
		if err := b.close(b.head, emit); err != nil {
			return route{}, err
		}
	}
	gi := b.free[len(b.free)-1]
	b.free = b.free[:len(b.free)-1]
	g := &b.groups[gi]
	g.bound = true
	if ehk != "" {
		g.byEHK, g.keyEHK = true, h
		b.byEHK[h] = gi
		return route{group: gi, hash: h, hashOK: true}, nil
	}
	g.byEHK, g.key = false, pk
	b.byPK[pk] = gi
	b.lastPK, b.lastPKGroup = pk, gi
	return route{group: gi}, nil
}

// cacheFind returns pk's cache entry, or nil, and the set it belongs to.
func (b *Builder) cacheFind(pk string) (*keyCacheEntry, *[2]keyCacheEntry) {
	// The same key is often looked up twice in a row (fast path, then
	// general path): its hash is kept.
	if unsafe.StringData(pk) != unsafe.StringData(b.sumPK) || len(pk) != len(b.sumPK) {
		b.sumPK, b.sum = pk, maphash.String(b.seed, pk)
	}
	set := &b.cache[b.sum&(keyCacheSets-1)]
	for i := range set {
		if e := &set[i]; e.sum == b.sum && e.pk == pk && pk != "" {
			return e, set
		}
	}
	return nil, set
}

// remember notes in the key cache that a record without explicit hash key
// was added to the aggregate numbered epoch of group rt.group, whose key
// table has its partition key at pkIdx.
func (b *Builder) remember(rt route, pk, ehk string, epoch uint64, pkIdx uint32) {
	e := rt.cached
	if e == nil {
		if ehk != "" {
			return
		}
		var set *[2]keyCacheEntry
		if e, set = b.cacheFind(pk); e == nil {
			set[1], set[0] = set[0], keyCacheEntry{pk: pk, sum: b.sum}
			e = &set[0]
		}
	}
	e.shard, e.epoch, e.pkIdx = rt.group, epoch, pkIdx
}

// parseEHK parses an explicit hash key, remembering the last one.
func (b *Builder) parseEHK(ehk string) (HashKey, error) {
	if ehk == b.lastEHK {
		return b.lastEHKHash, nil
	}
	h, err := ParseHashKey(ehk)
	if err != nil {
		return h, err
	}
	b.lastEHK, b.lastEHKHash = ehk, h
	return h, nil
}

// validatePK validates pk, remembering the last valid one.
func (b *Builder) validatePK(pk string) error {
	if pk == b.lastPK && pk != "" {
		return nil
	}
	if err := ValidatePartitionKey(pk); err != nil {
		return err
	}
	b.lastPK, b.lastPKGroup = pk, none
	return nil
}
