package spool

import (
	"context"
	"encoding/binary"
	"hash/crc32"
)

// Entry is one entry read by NextBatch.
type Entry struct {
	ID   ID
	Data []byte // a slice of the buffer given to NextBatch (or, alone, its own)
}

// NextBatch reads up to max of the oldest entries not yet handed out (at
// least one: it blocks like ReadNext) into the spare capacity of buf,
// appends them to ents and returns ents and buf extended over what was
// read. A run of whole frames is read from its segment file straight into
// buf with one read and checked there (CRC, IDs), so an entry is copied
// once, by the kernel, and Data points into buf, between the frames'
// headers. Entries come in ID order and once per Open, as from Next. An
// entry larger than buf's spare capacity comes alone in its own allocation
// when it is the first (else it waits for the next call); anything unusual
// (a segment's end, a corrupt frame, an I/O error) is handled as Next does.
func (s *Spool) NextBatch(ctx context.Context, buf []byte, max int, ents []Entry) ([]Entry, []byte, error) {
	for i := 0; ; i++ {
		var ch <-chan struct{}
		if i > 0 { // take the channel only once we may have to wait
			ch = s.dataEv.wait()
		}
		n0 := len(ents)
		ents, buf, err := s.tryBatch(buf, max, ents)
		if err != nil || len(ents) > n0 {
			return ents, buf, err
		}
		if ch == nil {
			continue
		}
		select {
		case <-ch:
		case <-s.closing:
			return ents, buf, ErrClosed
		case <-ctx.Done():
			return ents, buf, context.Cause(ctx)
		}
	}
}

// tryBatch is NextBatch without waiting. An error comes only with no
// entries read.
func (s *Spool) tryBatch(buf []byte, max int, ents []Entry) ([]Entry, []byte, error) {
	if s.closedFlag.Load() {
		return ents, buf, ErrClosed
	}
	s.rmu.Lock()
	defer s.unlockRead()
	if s.closedFlag.Load() {
		return ents, buf, ErrClosed
	}
	n0 := len(ents)
	for len(ents)-n0 < max {
		var st bulkStatus
		ents, buf, st = s.bulkLocked(buf, max-(len(ents)-n0), ents)
		if st == bulkRead {
			continue
		}
		if st == bulkNoRoom && len(ents) > n0 {
			break // the next frame waits for the next buffer
		}
		// One frame the careful way: the next segment, corruption, an
		// entry too large for what is left of buf.
		spare := buf[len(buf):]
		id, b, ok, err := s.readLocked(spare)
		if err != nil {
			if len(ents) > n0 {
				return ents, buf, nil // the next call meets it again
			}
			return ents, buf, err
		}
		if !ok {
			break
		}
		inBuf := len(b) == 0 || (cap(spare) >= len(b) && &spare[:cap(spare)][0] == &b[0])
		if !inBuf && len(ents) > n0 {
			// Read into its own allocation: it is in this batch, which
			// it ends.
			ents = append(ents, Entry{ID: id, Data: b})
			break
		}
		ents = append(ents, Entry{ID: id, Data: b})
		if !inBuf {
			break
		}
		buf = buf[:len(buf)+len(b)]
	}
	return ents, buf, nil
}

// bulkStatus is what bulkLocked did.
type bulkStatus int

const (
	bulkRead   bulkStatus = iota // read one frame or more
	bulkNoRoom                   // the next frame does not fit in buf
	bulkOther                    // nothing read: see readLocked
)

// bulkLocked reads the whole frames that follow the cursor in its segment
// and fit in buf's spare capacity with one read, and appends the entries
// among them not yet acknowledged, up to max, to ents. It stops at the
// first frame that is not plainly the next one (torn, corrupt, an ID out of
// sequence, too long) and leaves it to readLocked. Called with rmu held.
func (s *Spool) bulkLocked(buf []byte, max int, ents []Entry) ([]Entry, []byte, bulkStatus) {
	c := &s.rd
	g := c.g
	if g == nil || max <= 0 {
		return ents, buf, bulkOther
	}
	s.mu.Lock()
	removed, end, last := g.removed, g.end, g.last
	s.mu.Unlock()
	spare := int64(cap(buf) - len(buf))
	n := min(spare, end-c.off)
	if removed || c.off >= end {
		return ents, buf, bulkOther
	}
	if n < frameHeaderSize {
		return ents, buf, bulkNoRoom
	}
	if h := c.nextLen; h > 0 && c.nextAt == c.off && h <= end-c.off {
		// A bulk read saw the next frame's header: its length says how
		// much to read. Reading up to buf's end instead copies much of the
		// frame after it too, to be read again by the next call (with
		// aggregates of about half a buffer, most of what a sender read
		// was read twice).
		if h > spare {
			return ents, buf, bulkNoRoom // not a byte of it would be used
		}
		if 2*h > spare { // no second frame fits after it
			n = min(h+frameHeaderSize, end-c.off, spare) // it and the next header, if they fit
		}
	}
	c.nextLen = 0
	chunk := buf[len(buf) : len(buf)+int(n)]
	k, mem := len(chunk), s.wb && s.readRecent(g, chunk, c.off)
	if !mem {
		var err error
		k, err = c.f.ReadAt(chunk, c.off)
		if k < len(chunk) && err == nil { // io.ReaderAt: a short read has an error
			k = 0
		}
	}
	chunk = chunk[:k]
	n0, p, after := len(ents), 0, c.after
	stop := bulkOther
	for len(ents)-n0 < max {
		if len(chunk)-p < frameHeaderSize {
			stop = bulkNoRoom
			break
		}
		h := chunk[p : p+frameHeaderSize]
		plen := int64(binary.LittleEndian.Uint32(h[4:8]))
		id := ID(binary.LittleEndian.Uint64(h[8:16]))
		if id != after+1 || id > last || plen > s.maxEntry {
			break
		}
		if plen > int64(len(chunk)-p-frameHeaderSize) {
			if n == spare && int64(k) == n { // the frame goes on past buf
				stop = bulkNoRoom
			}
			c.nextLen, c.nextAt = frameHeaderSize+plen, c.off+int64(p)
			break
		}
		payload := chunk[p+frameHeaderSize : p+frameHeaderSize+int(plen) : p+frameHeaderSize+int(plen)]
		if !mem {
			crc := crc32.Update(g.hdr.salt, castagnoli, h[4:16])
			if crc32.Update(crc, castagnoli, payload) != binary.LittleEndian.Uint32(h[0:4]) {
				break
			}
		}
		ents = append(ents, Entry{ID: id, Data: payload})
		after = id
		p += frameHeaderSize + int(plen)
	}
	if p == 0 {
		return ents[:n0], buf, stop
	}
	c.after, c.off = after, c.off+int64(p)
	c.goodEnd = c.off
	// Entries acknowledged before they were read are passed over.
	kept := n0
	s.mu.Lock()
	for _, e := range ents[n0:] {
		if !g.isDone(e.ID) {
			ents[kept] = e
			kept++
		}
	}
	s.mu.Unlock()
	return ents[:kept], buf[:len(buf)+p], bulkRead
}
