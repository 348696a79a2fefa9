package aggregate

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"time"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

// Limits of Kinesis Data Streams and defaults of the Builder.
const (
	// DefaultMaxBytes is the default size of the aggregates the Builder
	// emits, the KPL's AggregationMaxSize.
	DefaultMaxBytes = 51200
	// MaxRecordSize is the largest Kinesis record (data plus partition key)
	// of a stream by default.
	MaxRecordSize = 1 << 20
	// MaxLargeRecordSize is the largest record of a stream configured for
	// large records.
	MaxLargeRecordSize = 10 << 20
	// DefaultMaxRecords is the default count limit of an aggregate. The
	// KPL's is unlimited; a bound keeps tiny records from making aggregates
	// whose key tables dominate, and 1000 records still fill DefaultMaxBytes
	// with records of 50 bytes.
	DefaultMaxRecords = 1000
	// DefaultMaxGroups is the default number of per-key aggregates a Builder
	// without a shard map keeps open: enough for the partition keys of a
	// host's sources, small enough to bound memory (each open aggregate may
	// hold up to MaxBytes).
	DefaultMaxGroups = 1024
	// DefaultMaxPendingBytes is the default bound of the memory a Builder
	// holds in aggregate buffers, open or kept for reuse (see
	// Config.MaxPendingBytes): 8 MiB. That is 160 open aggregates of the
	// default 50 KiB, or 8 of 1 MiB; a stream of more shards than that
	// has its least recently opened aggregates closed early, and they
	// still average over 1 KiB up to 8,192 shards, the size at which a
	// shard's 1,000 records/s limit and its 1 MiB/s limit meet.
	DefaultMaxPendingBytes = 8 << 20
)

// Config sets the limits of a Builder. Zero fields take their defaults.
type Config struct {
	// MaxBytes is the largest Kinesis record the Builder emits as an
	// aggregate, counted as Kinesis counts it: partition key plus data,
	// including magic and MD5. Default DefaultMaxBytes, at most RecordLimit.
	MaxBytes int
	// MaxRecords is the largest number of user records in one aggregate.
	// Default DefaultMaxRecords.
	MaxRecords int
	// RecordLimit is the stream's record size limit: a user record whose
	// data plus partition key exceed it is refused with ErrRecordTooLarge.
	// One that fits RecordLimit but not MaxBytes is emitted alone, as a
	// plain record. Default MaxRecordSize, at most MaxLargeRecordSize.
	RecordLimit int
	// MaxGroups bounds the aggregates a Builder without a shard map keeps
	// open, one per partition key (or explicit hash key); past it the
	// aggregate opened first is closed. Default DefaultMaxGroups. Unused
	// with a shard map, which has one group per shard.
	MaxGroups int
	// MaxPendingBytes bounds the memory the Builder holds in the buffers
	// of its aggregates, in both modes (with a shard map there is one
	// group per shard, however many): the bytes the open aggregates
	// count (Pending) and the capacity of their buffers plus the buffers
	// kept for reuse by the next aggregates (RetainedBytes). When adding a
	// record would pass it, the open aggregates of other groups are closed
	// first, oldest first, as MaxGroups does (ClosedForMemory counts
	// them); buffers kept for reuse are dropped before anything is closed.
	// Default the larger of DefaultMaxPendingBytes and 2*MaxBytes; at
	// least MaxBytes. A lone record larger than it is still taken (it is
	// then the only open aggregate).
	MaxPendingBytes int
	// Framing is how aggregates of 2+ records hold them: FramingKPL
	// (default), or FramingLines for outputs that write records one by one.
	// In FramingLines an aggregate is built in the newline framing while its
	// records share their keys and contain no "\n", and is turned into KPL
	// when one does not (see Aggregate.Framing); it closes exactly where the
	// KPL one would (sizes are counted as KPL), so KPL can always convert it.
	Framing Framing
}

// WithDefaults returns c with its zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxRecords == 0 {
		c.MaxRecords = DefaultMaxRecords
	}
	if c.RecordLimit == 0 {
		c.RecordLimit = MaxRecordSize
	}
	if c.MaxGroups == 0 {
		c.MaxGroups = DefaultMaxGroups
	}
	if c.MaxPendingBytes == 0 {
		c.MaxPendingBytes = max(DefaultMaxPendingBytes, 2*c.MaxBytes)
	}
	return c
}

// Validate reports every problem of c after defaults, joined.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if c.RecordLimit < 0 || c.RecordLimit > MaxLargeRecordSize {
		errs = append(errs, fmt.Errorf("aggregate: record limit %d: must be from 1 to %d", c.RecordLimit, MaxLargeRecordSize))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("aggregate: max bytes %d: must be positive", c.MaxBytes))
	} else if c.MaxBytes > c.RecordLimit {
		errs = append(errs, fmt.Errorf("aggregate: max bytes %d: above the record limit %d (raise the record limit for a stream with large records)", c.MaxBytes, c.RecordLimit))
	}
	if c.MaxRecords < 0 {
		errs = append(errs, fmt.Errorf("aggregate: max records %d: must be positive", c.MaxRecords))
	}
	if c.Framing > FramingLines {
		errs = append(errs, fmt.Errorf("aggregate: unknown framing %d", c.Framing))
	}
	if c.MaxGroups < 0 || c.MaxGroups > 1<<20 {
		errs = append(errs, fmt.Errorf("aggregate: max groups %d: must be from 1 to %d", c.MaxGroups, 1<<20))
	}
	if c.MaxPendingBytes < c.MaxBytes {
		errs = append(errs, fmt.Errorf("aggregate: max pending bytes %d: must be at least max bytes %d (one aggregate)", c.MaxPendingBytes, c.MaxBytes))
	}
	return errors.Join(errs...)
}

// Record is one user record.
type Record struct {
	Data            []byte
	PartitionKey    string // 1 to 256 Unicode characters
	ExplicitHashKey string // decimal, 0 to 2^128-1; "" to hash PartitionKey instead
	// Tags are the KPL's optional sub-record tags, filled by Decode. The
	// Builder does not emit tags (nor does the KPL): Add ignores them.
	Tags []Tag
	// JSONObject tells that Data is one valid JSON object without white
	// space around it, made so by the caller (the processing stage). The
	// aggregates whose records all have it say so (Aggregate.JSONObjects).
	JSONObject bool
}

// Tag is a KPL sub-record tag.
type Tag struct {
	Key   string
	Value string
}

// Builder packs user records into Kinesis records (see Add). Each group of
// records (the records predicted to land on one shard, or without a shard
// map the records of one partition key) has at most one open aggregate.
//
// A Builder is not safe for concurrent use, and emit must not call back into
// it. It does no I/O, starts no goroutine and never reads the clock: time
// comes from the caller. Its memory is bounded by MaxPendingBytes (the
// buffers of its aggregates, open or kept for reuse, whatever the number of
// groups), a few hundred bytes of bookkeeping per group, and a cache of
// 8192 recent partition keys (about 400 KiB).
type Builder struct {
	cfg    Config
	shards *ShardMap // nil: group by key

	groups []group
	// Groups with an open aggregate, oldest first (a doubly-linked list
	// through group.prev/next).
	head, tail int32

	// Without a shard map: the group bound to each key, and unbound groups.
	byPK  map[string]int32
	byEHK map[HashKey]int32
	free  []int32

	// The last record's keys, resolved: most streams repeat keys.
	lastPK      string
	lastPKGroup int32 // without a shard map; -1 if none
	lastEHK     string
	lastEHKHash HashKey

	// Recent partition keys: with a shard map their shards and hash keys,
	// and in both modes their groups and indexes in the open aggregates.
	seed      maphash.Seed
	cache     *[keyCacheSets][2]keyCacheEntry
	wholeSpan bool // one shard holds every hash key: no need to hash
	// The cache entry last found for a string address. An entry holds its
	// string, so an entry whose string has the same address and length as a
	// key holds that key.
	byAddr [1 << byAddrBits]*keyCacheEntry
	sumPK  string // the last key hashed for the cache...
	sum    uint64 // ...and its hash

	pendingRecords int
	pendingBytes   int
	epoch          uint64 // numbers the aggregates opened, from 1

	// Buffers: only groups with an open aggregate hold one; closed
	// aggregates' buffers wait in pool for the next aggregate of any
	// group. held is the weight (see bufs.weigh) of the open groups'
	// buffers plus poolBytes, that of the pool's; both are kept within
	// MaxPendingBytes by closing aggregates early (memCloses counts them).
	pool      []bufs
	poolBytes int
	held      int
	memCloses int

	agg     Aggregate // passed to emit: reused so that it does not escape per call
	scratch []byte    // toKPL's copy of an aggregate's lines
}

// group is one group's open aggregate.
type group struct {
	count    int       // user records; 0 when no aggregate is open
	epoch    uint64    // the open aggregate's number
	body     int       // size of the encoded AggregatedRecord
	openedAt time.Time // when the first record joined
	prev     int32     // open list
	next     int32

	// Without a shard map, the key the group is bound to.
	bound  bool
	byEHK  bool
	key    string
	keyEHK HashKey

	// The first record, sent alone as a plain record when it stays alone,
	// and whose hash key is the aggregate's explicit hash key otherwise.
	firstPK     string
	firstEHK    string
	firstHash   HashKey
	firstHashOK bool
	firstData   int // offset of its data in buf
	firstLen    int // length of its data

	lines   bool // the open aggregate is in FramingLines
	objects bool // all its records are JSON objects (Record.JSONObject)

	// The open aggregate's buffers (none when no aggregate is open), and
	// their weight when taken or last grown.
	bufs
	weight int

	ehkStr  string // the last aggregate's explicit hash key in decimal...
	ehkHash HashKey
	ehkOK   bool // ...valid for ehkHash
}

const byAddrBits = 10

const (
	initialHead = 256 // room for the key tables of a one-key aggregate
	minRoom     = 256 // of a new buffer, after its head: grown by doubling
	none        = int32(-1)
	// maxHeader bounds the bytes a Record message adds to its data: tag,
	// length, index fields, data tag and length (1+5+1+5+1+5+1+5).
	maxHeader = 24
)

// NewBuilder returns a Builder. With a shard map, records are grouped by the
// shard their hash key predicts, so every sub-record of an aggregate lies in
// the range of the shard the aggregate lands on. Without one (nil), records
// are grouped by partition key, or by explicit hash key when they have one:
// the sub-records of an aggregate then share one hash key, wherever it lands.
func NewBuilder(cfg Config, shards *ShardMap) (*Builder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	b := &Builder{cfg: cfg, shards: shards, head: none, tail: none, lastPKGroup: none}
	b.seed = maphash.MakeSeed()
	b.cache = new([keyCacheSets][2]keyCacheEntry)
	n := cfg.MaxGroups
	if shards != nil {
		n = shards.Len()
		one := shards.Shard(0)
		b.wholeSpan = shards.Len() == 1 && one.Start == (HashKey{}) && one.End == MaxHashKey
	} else {
		b.byPK = make(map[string]int32)
		b.byEHK = make(map[HashKey]int32)
		b.free = make([]int32, n)
		for i := range b.free {
			b.free[i] = int32(n - 1 - i) // pop 0 first
		}
	}
	b.groups = make([]group, n)
	for i := range b.groups {
		g := &b.groups[i]
		g.prev, g.next = none, none
	}
	return b, nil
}

// Config returns the Builder's configuration, defaults applied.
func (b *Builder) Config() Config { return b.cfg }

// Groups returns the number of groups: group indexes passed to emit and
// returned by Add are in [0, Groups()).
func (b *Builder) Groups() int { return len(b.groups) }

// Pending returns the user records buffered in open aggregates and the size
// the Kinesis records holding them would have if they were emitted now.
func (b *Builder) Pending() (records int, bytes int) {
	return b.pendingRecords, b.pendingBytes
}

// RetainedBytes returns the memory held in aggregate buffers, those of the
// open aggregates and those kept for reuse: at most MaxPendingBytes, or the
// buffers of one aggregate when they alone are larger.
func (b *Builder) RetainedBytes() int { return b.held }

// ClosedForMemory returns how many aggregates the Builder closed early to
// stay within MaxPendingBytes, since it was made.
func (b *Builder) ClosedForMemory() int { return b.memCloses }

// Add validates r and adds it to its group: the shard its hash key predicts,
// or without a shard map its partition key (explicit hash key, if it has
// one). If r does not fit the group's open aggregate (MaxBytes, MaxRecords),
// that aggregate is closed and passed to emit before r joins a new aggregate
// of the group; r itself is never emitted during its own Add. An aggregate
// that can take no more records stays open until the next Add to its group,
// FlushOlder or FlushAll. Without a shard map, a new key when MaxGroups
// aggregates are open first closes the one opened first. In both modes, when
// r would take the aggregates' memory past MaxPendingBytes, the open
// aggregates of other groups are closed first, the one opened first first.
//
// Add returns the index of the group r joined. Group indexes are reused once
// a group's aggregate is emitted, so a caller can keep per-group metadata in
// a slice of Groups() entries: emit(g, ...) closes what was added to g before.
//
// r.Data is copied: r may be reused once Add returns. The *Aggregate passed to
// emit aliases the Builder's buffers and is valid only during the call. If
// emit returns an error, Add returns it: the aggregate stays open, nothing is
// lost, and r was not added. Invalid records are refused with errors that
// wrap ErrPartitionKey, ErrExplicitHashKey, ErrRecordTooLarge or ErrNoShard;
// they change nothing. now is the caller's clock and stamps when an
// aggregate was opened (see FlushOlder).
func (b *Builder) Add(r Record, now time.Time, emit func(group int, a *Aggregate) error) (group int, err error) {
	// The fast path: a record without explicit hash key whose partition key
	// is in the key table of its group's open aggregate (the cache says so),
	// and fits it. Most records of a stream with repeating keys.
	var e *keyCacheEntry
	if pk := r.PartitionKey; r.ExplicitHashKey == "" && pk != "" {
		// Callers often pass the very same strings: try the entry last found
		// for this string's address before hashing its bytes.
		p := unsafe.StringData(pk)
		slot := &b.byAddr[uint64(uintptr(unsafe.Pointer(p)))*0x9E3779B97F4A7C15>>(64-byAddrBits)]
		e = *slot
		if e == nil || unsafe.StringData(e.pk) != p || len(e.pk) != len(pk) {
			if e, _ = b.cacheFind(pk); e == nil {
				return b.add(r, now, emit, nil)
			}
			*slot = e
		}
		if g := &b.groups[e.shard]; e.epoch == g.epoch && g.count > 0 && len(pk)+len(r.Data) <= b.cfg.RecordLimit {
			inner := recordSize(e.pkIdx, 0, false, len(r.Data))
			body := g.body + 1 + protowire.SizeVarint(uint64(inner)) + inner
			after := len(AggregatedPartitionKey) + wireFraming + body
			before := g.size()
			// Within the limits, within the memory bound, without growing
			// the buffer (the buffers' memory stays as it is) and without
			// turning lines into KPL: else the general path makes room.
			if g.count < b.cfg.MaxRecords && after <= b.cfg.MaxBytes && b.pendingBytes+after-before <= b.cfg.MaxPendingBytes &&
				len(g.buf)+maxHeader+len(r.Data) <= cap(g.buf) &&
				(!g.lines || e.pkIdx == 0 && g.firstEHK == "" && bytes.IndexByte(r.Data, '\n') < 0) {
				if g.lines {
					g.writeLine(r.Data)
				} else {
					g.write(e.pkIdx, 0, false, inner, r.Data)
				}
				g.objects = g.objects && r.JSONObject
				g.count++
				g.body = body
				b.pendingRecords++
				b.pendingBytes += after - before
				return int(e.shard), nil
			}
		}
	}
	return b.add(r, now, emit, e)
}

// add is Add's general path. cached is the cache entry of r's partition key
// if Add found it (r has no explicit hash key).
func (b *Builder) add(r Record, now time.Time, emit func(group int, a *Aggregate) error, cached *keyCacheEntry) (group int, err error) {
	pk, ehk, data := r.PartitionKey, r.ExplicitHashKey, r.Data
	if size := len(pk) + len(data); size > b.cfg.RecordLimit {
		return 0, fmt.Errorf("%w: %d bytes of data and partition key, the limit is %d", ErrRecordTooLarge, size, b.cfg.RecordLimit)
	}
	var rt route
	switch {
	case b.shards != nil && cached != nil:
		// A key validated and routed before: its shard does not change.
		rt = route{group: cached.shard, hash: cached.hash, hashOK: cached.hashOK, cached: cached}
	case b.shards != nil:
		rt, err = b.routeByShard(pk, ehk)
	default:
		rt, err = b.routeByKey(pk, ehk, emit)
	}
	if err != nil {
		return 0, err
	}

	g := &b.groups[rt.group]
	hasEHK := ehk != ""
	if g.count > 0 {
		// Does r fit the open aggregate?
		if pkIdx, ehkIdx, inner, body, ok := b.fit(g, rt, pk, ehk, len(data)); ok {
			need := b.needLen(g, pkIdx, ehkIdx, hasEHK, data)
			newPK, newEHK := pkIdx == g.pks.next(), hasEHK && ehkIdx == g.ehks.next()
			if err := b.makeRoom(rt.group, len(AggregatedPartitionKey)+wireFraming+body-g.size(), need, pk, ehk, newPK, newEHK, emit); err != nil {
				return 0, err
			}
			b.grow(g, need)
			b.append(g, pk, ehk, pkIdx, ehkIdx, inner, data, body, r.JSONObject)
			b.remember(rt, pk, ehk, g.epoch, pkIdx)
			return int(rt.group), nil
		}
		if err := b.close(rt.group, emit); err != nil {
			return 0, err
		}
		if b.shards == nil {
			// Closing unbound the group: bind it again (the index just freed).
			if rt, err = b.routeByKey(pk, ehk, emit); err != nil {
				return 0, err
			}
			g = &b.groups[rt.group]
		}
	}

	// r opens a new aggregate of the group, in buffers of the pool or new
	// ones, once the memory bound allows them.
	if err := b.makeRoom(rt.group, len(pk)+len(data), maxHeader+len(data), pk, ehk, true, hasEHK, emit); err != nil {
		b.release(g)
		if g.bound && g.count == 0 {
			b.unbind(rt.group)
		}
		return 0, err
	}
	if g.buf == nil {
		g.bufs = bufs{head: initialHead, pks: keyTable{field: 1}, ehks: keyTable{field: 2}}
		g.buf = make([]byte, initialHead, initialHead+max(minRoom, maxHeader+len(data)))
		g.weight = g.weigh()
		b.held += g.weight
	}
	b.grow(g, g.head+maxHeader+len(data))
	b.epoch++
	g.epoch = b.epoch
	g.openedAt = now
	g.firstPK, g.firstEHK = pk, ehk
	g.firstHash, g.firstHashOK = rt.hash, rt.hashOK
	g.lines = b.cfg.Framing == FramingLines
	g.objects = true
	b.link(rt.group)
	inner := recordSize(0, 0, hasEHK, len(data))
	body := keyFieldSize(pk) + 1 + protowire.SizeVarint(uint64(inner)) + inner
	if hasEHK {
		body += keyFieldSize(ehk)
	}
	b.append(g, pk, ehk, 0, 0, inner, data, body, r.JSONObject)
	b.remember(rt, pk, ehk, g.epoch, 0)
	return int(rt.group), nil
}

// fit works out a record's place in g's open aggregate: its key indexes
// (existing entries, or the next ones), the size of its Record message and
// the aggregate's size with it; ok reports whether it fits the limits.
func (b *Builder) fit(g *group, rt route, pk, ehk string, dataLen int) (pkIdx, ehkIdx uint32, inner, body int, ok bool) {
	found := false
	if rt.cached != nil && rt.cached.epoch == g.epoch {
		pkIdx, found = rt.cached.pkIdx, true // the key is in this aggregate's table
	} else {
		pkIdx, found = g.pks.lookup(pk)
	}
	grow := 0
	if !found {
		pkIdx = g.pks.next()
		grow += keyFieldSize(pk)
	}
	hasEHK := ehk != ""
	if hasEHK {
		if ehkIdx, found = g.ehks.lookup(ehk); !found {
			ehkIdx = g.ehks.next()
			grow += keyFieldSize(ehk)
		}
	}
	inner = recordSize(pkIdx, ehkIdx, hasEHK, dataLen)
	body = g.body + grow + 1 + protowire.SizeVarint(uint64(inner)) + inner
	ok = g.count < b.cfg.MaxRecords && len(AggregatedPartitionKey)+wireFraming+body <= b.cfg.MaxBytes
	return pkIdx, ehkIdx, inner, body, ok
}

// Closes reports whether Add(r) would first close the open aggregate of r's
// group because r does not fit it (MaxBytes, MaxRecords). A caller drawing
// one partition key per aggregate (partition_key: random) asks it to give
// the record that opens the next aggregate the next key. It reports false
// without a shard map and for a record Add refuses; it changes nothing but
// caches (it may cache r's partition key, as Add would).
func (b *Builder) Closes(r Record) bool {
	if b.shards == nil || len(r.PartitionKey)+len(r.Data) > b.cfg.RecordLimit {
		return false
	}
	rt := route{group: 0}
	if !b.wholeSpan || r.ExplicitHashKey != "" {
		var err error
		if rt, err = b.routeByShard(r.PartitionKey, r.ExplicitHashKey); err != nil {
			return false
		}
	}
	g := &b.groups[rt.group]
	if g.count == 0 {
		return false
	}
	// Far from the limits it fits, whatever its keys add: a record costs
	// at most its keys, its data and 32 bytes of tags and lengths.
	if g.count < b.cfg.MaxRecords && len(AggregatedPartitionKey)+wireFraming+g.body+len(r.PartitionKey)+len(r.ExplicitHashKey)+len(r.Data)+32 <= b.cfg.MaxBytes {
		return false
	}
	_, _, _, _, ok := b.fit(g, rt, r.PartitionKey, r.ExplicitHashKey, len(r.Data))
	return !ok
}

// recordSize is the encoded size of a Record message.
func recordSize(pkIdx, ehkIdx uint32, hasEHK bool, dataLen int) int {
	n := 1 + protowire.SizeVarint(uint64(pkIdx)) + 1 + protowire.SizeBytes(dataLen)
	if hasEHK {
		n += 1 + protowire.SizeVarint(uint64(ehkIdx))
	}
	return n
}

// Field tags of the messages, pre-encoded (all fit one byte).
const (
	tagRecords  = 3<<3 | byte(protowire.BytesType)  // AggregatedRecord.records
	tagPKIndex  = 1<<3 | byte(protowire.VarintType) // Record.partition_key_index
	tagEHKIndex = 2<<3 | byte(protowire.VarintType) // Record.explicit_hash_key_index
	tagData     = 3<<3 | byte(protowire.BytesType)  // Record.data
)

// append encodes a record into g's open aggregate, adding its keys to the
// tables unless pkIdx/ehkIdx name existing entries; inner is the size of the
// Record message, body the aggregate's size (as KPL) afterwards. The tables
// and sizes are kept in both framings, so that a FramingLines aggregate
// closes where the KPL one would and converts to it at any time.
func (b *Builder) append(g *group, pk, ehk string, pkIdx, ehkIdx uint32, inner int, data []byte, body int, object bool) {
	before := g.size()
	if pkIdx == g.pks.next() {
		n := g.pks.reserve(pk)
		b.held += n
		g.weight += n
		g.pks.add(pk)
	}
	hasEHK := ehk != ""
	if hasEHK && ehkIdx == g.ehks.next() {
		n := g.ehks.reserve(ehk)
		b.held += n
		g.weight += n
		g.ehks.add(ehk)
	}
	// The newline framing holds records of the first record's keys, without
	// line breaks.
	if g.lines && (pkIdx != 0 || hasEHK != (g.firstEHK != "") || ehkIdx != 0 || bytes.IndexByte(data, '\n') >= 0) {
		b.toKPL(g)
	}
	var off int
	if g.lines {
		off = g.writeLine(data)
	} else {
		off = g.write(pkIdx, ehkIdx, hasEHK, inner, data)
	}
	if g.count == 0 {
		g.firstData, g.firstLen = off, len(data)
	}
	g.objects = g.objects && object
	g.count++
	g.body = body
	b.pendingRecords++
	b.pendingBytes += g.size() - before
}

// writeLine appends data and "\n" to g.buf and returns the offset of data.
func (g *group) writeLine(data []byte) int {
	off := len(g.buf)
	g.buf = append(g.buf, data...)
	g.buf = append(g.buf, '\n')
	return off
}

// toKPL turns g's open aggregate from FramingLines into FramingKPL: its
// records (all with the first record's keys, index 0 in the tables) are
// encoded again as Record messages.
func (b *Builder) toKPL(g *group) {
	g.lines = false
	if g.count == 0 {
		return
	}
	b.scratch = append(b.scratch[:0], g.buf[g.head:]...)
	g.buf = g.buf[:g.head]
	hasEHK := g.firstEHK != ""
	rest := b.scratch
	for k := 0; len(rest) > 0; k++ {
		i := bytes.IndexByte(rest, '\n')
		off := g.write(0, 0, hasEHK, recordSize(0, 0, hasEHK, i), rest[:i])
		if k == 0 {
			g.firstData = off
		}
		rest = rest[i+1:]
	}
	if cap(b.scratch) > 4*b.cfg.MaxBytes {
		b.scratch = nil // a lone large record: do not keep its memory
	}
}

// write appends a Record message of size inner, as field 3, to g.buf, and
// returns the offset of data in it.
func (g *group) write(pkIdx, ehkIdx uint32, hasEHK bool, inner int, data []byte) int {
	// Written in place: tag, length, index fields, data tag and length (at
	// most maxHeader bytes), data. The caller made room (grow); growing
	// here only keeps a wrong estimate from corrupting anything.
	buf := g.buf
	if cap(buf)-len(buf) < maxHeader+len(data) {
		buf = slices.Grow(buf, maxHeader+len(data))
	}
	l := len(buf)
	w := buf[l : l+maxHeader+len(data)]
	w[0] = tagRecords
	n := 1 + putVarint(w[1:], uint64(inner))
	w[n] = tagPKIndex
	n += 1 + putVarint(w[n+1:], uint64(pkIdx))
	if hasEHK {
		w[n] = tagEHKIndex
		n += 1 + putVarint(w[n+1:], uint64(ehkIdx))
	}
	w[n] = tagData
	n += 1 + putVarint(w[n+1:], uint64(len(data)))
	copy(w[n:], data)
	g.buf = buf[:l+n+len(data)]
	return l + n
}

// putVarint writes v as a protobuf varint at the start of b, which must be
// large enough, and returns its length.
func putVarint(b []byte, v uint64) int {
	i := 0
	for v >= 0x80 {
		b[i] = byte(v) | 0x80
		v >>= 7
		i++
	}
	b[i] = byte(v)
	return i + 1
}

// size is what g's open aggregate would count against Kinesis limits.
func (g *group) size() int {
	switch g.count {
	case 0:
		return 0
	case 1:
		return len(g.firstPK) + g.firstLen
	}
	return len(AggregatedPartitionKey) + wireFraming + g.body
}

// close emits group gi's open aggregate and resets the group. If emit fails
// the group is left as it was.
func (b *Builder) close(gi int32, emit func(int, *Aggregate) error) error {
	g := &b.groups[gi]
	a := &b.agg
	switch {
	case g.count == 1:
		*a = Aggregate{PartitionKey: g.firstPK, ExplicitHashKey: g.firstEHK, Body: g.buf[g.firstData : g.firstData+g.firstLen], Count: 1, JSONObjects: g.objects}
	case g.lines:
		*a = Aggregate{PartitionKey: g.firstPK, ExplicitHashKey: g.firstEHK, Aggregated: true, Framing: FramingLines, Body: g.buf[g.head:], Count: g.count, JSONObjects: g.objects}
	default:
		*a = Aggregate{PartitionKey: AggregatedPartitionKey, ExplicitHashKey: g.aggregateEHK(), Aggregated: true, Body: g.assemble(), Count: g.count, JSONObjects: g.objects}
	}
	if a.Aggregated && b.shards != nil {
		// Every record of the group was routed to shard gi of the map.
		a.BuiltFor = &b.shards.shards[gi]
	}
	if w := g.weigh(); w != g.weight {
		// assemble moved the records behind larger tables.
		b.held += w - g.weight
		g.weight = w
	}
	err := emit(int(gi), a)
	*a = Aggregate{} // drop the references to the group's buffers
	if err != nil {
		return err
	}

	b.pendingRecords -= g.count
	b.pendingBytes -= g.size()
	b.unlink(gi)
	g.count, g.body = 0, 0
	g.firstPK, g.firstEHK = "", ""
	b.release(g)
	if g.bound {
		b.unbind(gi)
	}
	return nil
}

// unbind frees group gi, bound to a key without a shard map.
func (b *Builder) unbind(gi int32) {
	g := &b.groups[gi]
	g.bound = false
	if g.byEHK {
		delete(b.byEHK, g.keyEHK)
	} else {
		delete(b.byPK, g.key)
		g.key = ""
	}
	if b.lastPKGroup == gi {
		b.lastPKGroup = none
	}
	b.free = append(b.free, gi)
}

// aggregateEHK returns the explicit hash key of g's aggregate: the hash key
// of its first record, in decimal (what the KPL sets).
func (g *group) aggregateEHK() string {
	if !g.firstHashOK {
		g.firstHash, g.firstHashOK = PartitionKeyHash(g.firstPK), true
	}
	if !g.ehkOK || g.ehkHash != g.firstHash {
		g.ehkStr, g.ehkHash, g.ehkOK = g.firstHash.String(), g.firstHash, true
	}
	return g.ehkStr
}

// assemble copies the key tables into the room before the records and
// returns the whole AggregatedRecord message.
func (g *group) assemble() []byte {
	tables := len(g.pks.enc) + len(g.ehks.enc)
	if tables > g.head {
		// Move the records to make room, for this and later aggregates.
		head := 2 * tables
		records := len(g.buf) - g.head
		if cap(g.buf) >= head+records {
			g.buf = g.buf[:head+records]
			copy(g.buf[head:], g.buf[g.head:]) // overlapping: copy moves
		} else {
			nb := make([]byte, head+records, head+cap(g.buf)-g.head)
			copy(nb[head:], g.buf[g.head:])
			g.buf = nb
		}
		g.firstData += head - g.head
		g.head = head
	}
	start := g.head - tables
	copy(g.buf[start:], g.pks.enc)
	copy(g.buf[start+len(g.pks.enc):], g.ehks.enc)
	return g.buf[start:]
}

// link appends gi to the list of open aggregates.
func (b *Builder) link(gi int32) {
	g := &b.groups[gi]
	g.prev, g.next = b.tail, none
	if b.tail != none {
		b.groups[b.tail].next = gi
	} else {
		b.head = gi
	}
	b.tail = gi
}

// unlink removes gi from the list of open aggregates.
func (b *Builder) unlink(gi int32) {
	g := &b.groups[gi]
	if g.prev != none {
		b.groups[g.prev].next = g.next
	} else {
		b.head = g.next
	}
	if g.next != none {
		b.groups[g.next].prev = g.prev
	} else {
		b.tail = g.prev
	}
	g.prev, g.next = none, none
}

// FlushOlder closes every open aggregate opened before cutoff (the caller's
// now minus its RecordMaxBufferedTime), oldest first, passing each to emit.
// It stops at the first error of emit and returns it; that aggregate and the
// ones not yet visited stay open.
func (b *Builder) FlushOlder(cutoff time.Time, emit func(group int, a *Aggregate) error) error {
	for gi := b.head; gi != none; {
		next := b.groups[gi].next
		if b.groups[gi].openedAt.Before(cutoff) {
			if err := b.close(gi, emit); err != nil {
				return err
			}
		}
		gi = next
	}
	return nil
}

// FlushAll closes every open aggregate (at shutdown), oldest first, passing
// each to emit. It stops at the first error of emit and returns it; that
// aggregate and the ones not yet visited stay open.
func (b *Builder) FlushAll(emit func(group int, a *Aggregate) error) error {
	for b.head != none {
		if err := b.close(b.head, emit); err != nil {
			return err
		}
	}
	return nil
}
