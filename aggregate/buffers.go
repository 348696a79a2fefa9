package aggregate

import "bytes"

// bufs are the buffers of an open aggregate, reused by the next ones: buf
// holds head bytes of room for the key tables, then the encoded records
// (field 3 of AggregatedRecord). Tables precede records on the wire, as the
// KPL writes them, and are copied into the room on close.
type bufs struct {
	buf  []byte
	head int
	pks  keyTable
	ehks keyTable
}

// weigh estimates the memory of the buffers: their capacities, a string
// header per key and the map of a large key table.
func (s *bufs) weigh() int {
	return cap(s.buf) + s.pks.weigh() + s.ehks.weigh()
}

// acquire gives g, which has no open aggregate, the buffers last put in the
// pool, if any.
func (b *Builder) acquire(g *group) {
	if g.buf != nil || len(b.pool) == 0 {
		return
	}
	last := len(b.pool) - 1
	s := b.pool[last]
	b.pool[last] = bufs{}
	b.pool = b.pool[:last]
	w := s.weigh()
	b.poolBytes -= w
	g.bufs, g.weight = s, w // held is unchanged: the weight moves
}

// release takes g's buffers: they go to the pool for the next aggregate if
// the memory bound allows it, else to the garbage collector.
func (b *Builder) release(g *group) {
	if g.buf == nil {
		return
	}
	b.held -= g.weight
	s := g.bufs
	g.bufs, g.weight = bufs{}, 0
	s.buf = s.buf[:s.head]
	s.pks.reset()
	s.ehks.reset()
	w := s.weigh()
	if cap(s.buf) > 2*(b.cfg.MaxBytes+s.head) || b.held+w > b.cfg.MaxPendingBytes {
		return // a lone record larger than MaxBytes, or no room: do not keep its memory
	}
	b.pool = append(b.pool, s)
	b.poolBytes += w
	b.held += w
}

// needLen is the length g.buf needs to take a record that fits g's open
// aggregate (fit), turning its lines into KPL if the record makes it.
func (b *Builder) needLen(g *group, pkIdx, ehkIdx uint32, hasEHK bool, data []byte) int {
	if g.lines && (pkIdx != 0 || hasEHK != (g.firstEHK != "") || ehkIdx != 0 || bytes.IndexByte(data, '\n') >= 0) {
		// Every record rewritten with a Record header instead of "\n".
		return len(g.buf) + g.count*(maxHeader-1) + maxHeader + len(data)
	}
	return len(g.buf) + maxHeader + len(data)
}

// growth is the capacity g.buf gains to reach length need (see grow).
func (b *Builder) growth(g *group, need int) int {
	if g.buf == nil {
		return initialHead + max(minRoom, need)
	}
	if need <= cap(g.buf) {
		return 0
	}
	// Doubling, but no further than a full aggregate needs.
	return max(need, min(2*cap(g.buf), g.head+b.cfg.MaxBytes+maxHeader)) - cap(g.buf)
}

// swaps reports whether grow(g, need) swaps g.buf for the buffer on top of
// the pool (see grow) rather than allocating a larger one.
func (b *Builder) swaps(g *group, need int) bool {
	if g.count == 0 || need <= cap(g.buf) || len(b.pool) == 0 {
		return false
	}
	top := &b.pool[len(b.pool)-1]
	room := cap(top.buf) - top.head
	return room >= need-g.head && room <= 2*(cap(g.buf)+b.growth(g, need)-g.head)
}

// grow makes g.buf's capacity at least need: with the buffer on top of the
// pool if it is large enough but not much larger than growing would make
// it (g's buffer takes its place: held does not change), else with a new
// one.
func (b *Builder) grow(g *group, need int) {
	if b.swaps(g, need) {
		top := &b.pool[len(b.pool)-1]
		wg, wt := g.weigh(), top.weigh()
		nb := top.buf[:top.head+len(g.buf)-g.head]
		copy(nb[top.head:], g.buf[g.head:])
		old, oldHead := g.buf, g.head
		g.buf, g.head = nb, top.head
		g.firstData += g.head - oldHead
		top.buf, top.head = old[:oldHead], oldHead
		g.weight += g.weigh() - wg // what top lost: held does not change
		b.poolBytes += top.weigh() - wt
		return
	}
	n := b.growth(g, need)
	if n == 0 {
		return
	}
	nb := make([]byte, len(g.buf), cap(g.buf)+n)
	copy(nb, g.buf)
	g.buf = nb
	b.held += n
	g.weight += n
}

// freshWeight is the weight of new buffers for a new aggregate whose first
// record has keys pk and ehk (if hasEHK) and needs need bytes.
func (b *Builder) freshWeight(need int, pk, ehk string, hasEHK bool) int {
	var t keyTable
	w := initialHead + max(minRoom, need) + t.growth(pk)
	if hasEHK {
		w += t.growth(ehk)
	}
	return w
}

// makeRoom makes room for a record joining group gi: it adds pending to
// the bytes of the open aggregates, makes gi's buffer reach length need
// (counted from its head when gi has no open aggregate), and adds pk and ehk
// to its key tables if newPK and newEHK. While that would pass
// MaxPendingBytes it drops the pool's buffers, then closes the open
// aggregates of other groups, oldest first, until none is left. gi's own
// aggregate is never closed here.
func (b *Builder) makeRoom(gi int32, pending, need int, pk, ehk string, newPK, newEHK bool, emit func(int, *Aggregate) error) error {
	g := &b.groups[gi]
	pressed := false // an aggregate was closed to make room
	for {
		if g.buf == nil && len(b.pool) > 0 && (!pressed || b.pool[len(b.pool)-1].weigh() <= 2*b.freshWeight(need, pk, ehk, newEHK)) {
			// Buffers counted already. Not, under pressure, the larger
			// buffers of the aggregate just closed: taking them would
			// leave no room again, and round-robin records over more
			// shards than such buffers fit would close every aggregate
			// (the next shard's, the oldest) before its second record.
			b.acquire(g)
		}
		grow := b.growth(g, need)
		if g.count == 0 && g.buf != nil {
			grow = b.growth(g, g.head+need)
		} else if b.swaps(g, need) {
			grow = 0 // buffers counted already change places
		}
		if newPK {
			grow += g.pks.growth(pk)
		}
		if newEHK {
			grow += g.ehks.growth(ehk)
		}
		pendingOK := b.pendingBytes+pending <= b.cfg.MaxPendingBytes
		if pendingOK && b.held+grow <= b.cfg.MaxPendingBytes {
			return nil
		}
		if pendingOK && b.poolBytes > 0 {
			last := len(b.pool) - 1
			w := b.pool[last].weigh()
			b.pool[last] = bufs{}
			b.pool = b.pool[:last]
			b.poolBytes -= w
			b.held -= w
			continue
		}
		if pendingOK && g.count == 0 && g.buf != nil && g.weight > 2*b.freshWeight(need, pk, ehk, newEHK) {
			// A new aggregate in buffers that a larger one left: new
			// buffers of the record's size cost less.
			b.held -= g.weight
			g.bufs, g.weight = bufs{}, 0
			continue
		}
		victim := b.head
		if victim == gi {
			victim = b.groups[victim].next
		}
		if victim == none {
			return nil // gi alone: it may take one aggregate's memory
		}
		if err := b.close(victim, emit); err != nil {
			return err
		}
		b.memCloses++
		pressed = true
	}
}
