package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
)

// maxCorruptLogs bounds the corruption reports logged per segment; the
// counters count all of them.
const maxCorruptLogs = 3

// cursor is the shared read position, guarded by Spool.rmu. Entries before it
// have been handed out (or skipped as done) since Open.
type cursor struct {
	g       *segment
	f       file
	fr      *frameReader
	buf     []byte // the frame reader's window, reused from segment to segment
	off     int64  // where the next frame starts
	goodEnd int64  // where the last good frame ended
	after   ID     // ID of the last frame passed
	// nextLen is the length (header included) the header at off gave
	// when a bulk read saw it but not its whole frame; 0 when unknown. A
	// hint for the size of the next read only: the frame is checked once
	// read, whatever the hint said.
	nextLen int64
	nextAt  int64 // the offset nextLen was seen at (nextLen holds only while off == nextAt)
}

// closeFile closes the file of a cursor whose segment was removed, keeping
// its place: every read checks removed before it uses f or fr, and moves on.
func (c *cursor) closeFile() {
	if c.f != nil {
		c.f.Close()
	}
	c.f, c.fr = nil, nil
	c.nextLen = 0
}

func (c *cursor) release() {
	if c.f != nil {
		c.f.Close()
	}
	c.g, c.f, c.fr = nil, nil, nil
	c.nextLen = 0
}

// Next returns the oldest entry not yet handed out since Open, blocking until
// there is one, ctx is done or the spool closes (ErrClosed). Entries come in
// ID order, each once per Open; entries not acknowledged before a restart
// come again after it. The returned slice belongs to the caller. A read
// error (EIO) is returned as is; the entry is not skipped, and the next call
// tries it again.
func (s *Spool) Next(ctx context.Context) (ID, []byte, error) {
	id, b, err := s.ReadNext(ctx, nil)
	if err == nil && b == nil {
		b = []byte{}
	}
	return id, b, err
}

// ReadNext is Next appending the entry to dst[:0], so a caller that reuses
// its buffer reads without allocating.
func (s *Spool) ReadNext(ctx context.Context, dst []byte) (ID, []byte, error) {
	for i := 0; ; i++ {
		var ch <-chan struct{}
		if i > 0 { // take the channel only once we may have to wait
			ch = s.dataEv.wait()
		}
		id, b, ok, err := s.TryNext(dst)
		if err != nil || ok {
			return id, b, err
		}
		if ch == nil {
			continue
		}
		select {
		case <-ch:
		case <-s.closing:
			return 0, dst[:0], ErrClosed
		case <-ctx.Done():
			return 0, dst[:0], context.Cause(ctx)
		}
	}
}

// TryNext is ReadNext without waiting: ok is false when no entry is ready.
func (s *Spool) TryNext(dst []byte) (ID, []byte, bool, error) {
	dst = dst[:0]
	if s.closedFlag.Load() {
		return 0, dst, false, ErrClosed
	}
	s.rmu.Lock()
	defer s.unlockRead()
	if s.closedFlag.Load() {
		return 0, dst, false, ErrClosed
	}
	return s.readLocked(dst)
}

func (s *Spool) readLocked(dst []byte) (ID, []byte, bool, error) {
	c := &s.rd
	for {
		if c.g == nil {
			if ok, err := s.openNextLocked(0); !ok || err != nil {
				return 0, dst, false, err
			}
		}
		g := c.g
		s.mu.Lock()
		removed, sealed, end, last := g.removed, g.sealed, g.end, g.last
		s.mu.Unlock()
		if removed { // dropped, or finished while we were at its end
			if ok, err := s.openNextLocked(g.hdr.first); !ok || err != nil {
				return 0, dst, false, err
			}
			continue
		}
		if c.off >= end {
			if !sealed {
				return 0, dst, false, nil // caught up with the writer
			}
			if ok, err := s.openNextLocked(g.hdr.first); !ok || err != nil {
				return 0, dst, false, err
			}
			continue
		}
		id, out, next, err := s.readFrameLocked(end, dst)
		if err == nil && id <= last && plausible(id, c.off, c.goodEnd, c.after) {
			if id > c.after+1 {
				s.lostLocked(g, c.after+1, id-1, c.off-c.goodEnd, "corrupt frames skipped")
			}
			c.after, c.goodEnd, c.off = id, next, next
			s.mu.Lock()
			done := g.isDone(id)
			s.mu.Unlock()
			if done { // acknowledged before it was read
				dst = out[:0]
				continue
			}
			return id, out, true, nil
		}
		found := false
		if err == nil || errors.Is(err, errBadFrame) {
			var p int64
			p, _, found, err = c.fr.resync(c.off+1, end, c.goodEnd, c.after)
			if found {
				c.off = p
				continue
			}
		}
		if err != nil {
			// An I/O error, not a bad frame: the entries may well be
			// intact. Nothing is marked lost and the cursor stays, so the
			// next call (or the next Open) reads from here again.
			return 0, dst, false, fmt.Errorf("spool: read %s: %w", g.path, err)
		}
		// Nothing valid up to end: every frame left there is lost.
		if c.after < last {
			s.lostLocked(g, c.after+1, last, end-c.goodEnd, "corrupt frames at the end of the readable part")
		}
		c.after, c.goodEnd, c.off = last, end, end
	}
}

// readFrameLocked reads the frame at the cursor. A frame longer than
// max_entry_bytes (written under an older configuration, or a corrupt
// length) is checked before its payload is kept, so a bad length cannot make
// the reader allocate more than that.
func (s *Spool) readFrameLocked(end int64, dst []byte) (ID, []byte, int64, error) {
	c := &s.rd
	_, plen, _, err := c.fr.header(c.off, end)
	if err != nil {
		return 0, dst, 0, err
	}
	if plen > s.maxEntry {
		if _, _, _, err := c.fr.frame(c.off, end, nil, false); err != nil {
			return 0, dst, 0, err
		}
	}
	return c.fr.frame(c.off, end, dst, true)
}

// openNextLocked moves the cursor to the first live segment after the one
// starting at after (0: the oldest). It reports false if there is none yet.
func (s *Spool) openNextLocked(after ID) (bool, error) {
	c := &s.rd
	for {
		s.mu.Lock()
		i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].hdr.first > after })
		var g *segment
		if i < len(s.segs) {
			g = s.segs[i]
		}
		s.mu.Unlock()
		if g == nil {
			return false, nil
		}
		f, err := s.fs.OpenFile(g.path, os.O_RDONLY, 0)
		if errors.Is(err, os.ErrNotExist) { // finished and deleted meanwhile
			after = g.hdr.first
			continue
		}
		if err != nil {
			return false, fmt.Errorf("spool: open %s for reading: %w", g.path, err)
		}
		c.release()
		if c.buf == nil {
			c.buf = *readBufs.Get().(*[]byte)
		}
		c.g, c.f = g, f
		c.fr = newFrameReader(f, g.hdr.salt, maxEntryLimit, c.buf)
		c.off, c.goodEnd, c.after = segHeaderSize, segHeaderSize, g.hdr.first-1
		c.nextLen = 0
		return true, nil
	}
}

// lostLocked marks the entries [from, to] of g as lost to corruption: they
// are counted, logged and recorded like acknowledgements, so the segment can
// still be deleted and a restart does not count them again.
func (s *Spool) lostLocked(g *segment, from, to ID, bytes int64, what string) {
	var n int64
	s.mu.Lock()
	if g.removed { // dropped (and counted) meanwhile, or finished
		s.mu.Unlock()
		return
	}
	for id := from; id <= to; id++ {
		if g.done.set(uint64(id - g.hdr.first)) {
			g.queueAck(id)
			n++
		}
	}
	logIt := n > 0 && g.logged < maxCorruptLogs
	if logIt {
		g.logged++
	}
	kick := s.retireIfDoneLocked(g)
	s.mu.Unlock()
	if n == 0 {
		return
	}
	s.st.entries.Add(-n)
	s.st.corruptEntries.Add(uint64(n))
	s.st.bytesLost.Add(uint64(max(bytes, 0)))
	if logIt {
		s.log.Error("spool: "+what, "segment", g.path, "first_lost_id", uint64(from), "last_lost_id", uint64(to),
			"entries_lost", n, "bytes_skipped", bytes)
	}
	if kick {
		s.kick(s.kickMaint)
	}
}

// Rewind makes the entries handed out but not acknowledged come again, as
// after a restart: the read cursor goes back to the oldest live segment, and
// entries acknowledged meanwhile are skipped. The agent calls it when it
// replaces a flow's sender on a spool it keeps open (a configuration
// reload): what the old sender was sending is sent by the new one. Call it
// while no reader is delivering entries: an entry a reader still holds is
// handed out twice (at-least-once).
func (s *Spool) Rewind() {
	s.rmu.Lock()
	if !s.closedFlag.Load() {
		s.rd.release()
	}
	s.rmu.Unlock()
	s.dataEv.broadcast()
}
