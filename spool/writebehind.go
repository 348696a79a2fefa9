package spool

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"
)

// Write-behind. With sync: interval and never an entry is not on disk when
// Append returns anyway (Durable says when it is), so Append need not wait
// for write(2): it checks room, hands out the ID and copies the frame into
// the stage, and the writer goroutine writes staged frames in runs of up to
// stageMax bytes while the appender (a flow's source) goes on. On a shared
// two-core machine the write into the page cache, done by the source
// goroutine, was what kept the spool path at half the direct path's
// throughput (BENCHMARKS.md, "Spool path"); writing 1 MiB runs instead of
// one aggregate at a time also halves what write(2) costs per byte.
//
// What an accepted entry is promised does not change:
//   - room (max_bytes, the free-disk floor) is counted when it is accepted,
//     so a staged frame never has to be refused;
//   - readers, Ack and Durable see it only once it is written, so a
//     checkpoint never covers an entry that is only in memory;
//   - a write that fails (ENOSPC, a directory made read-only, EIO) keeps the
//     frames staged and is tried again: after a deletion or a free-space
//     check for ENOSPC, after a backoff otherwise. Meanwhile the spool
//     counts as full for new entries (when_full applies to them) and Sync
//     returns the error;
//   - at Close the writer tries once more; what it still cannot write, or
//     what an earlier failed fsync left staged, is lost: counted
//     (Stats.Unwritten) and logged. Sources that can read again (files) do,
//     since no checkpoint covered it; a socket's records are lost as a crash
//     would lose entries not yet synced.
//
// The stage is double-buffered: appenders fill one buffer while the writer
// writes the other, so an idle writer takes a frame at once and a busy one
// finds many. An appender waits for the writer only when the stage already
// holds stageMax bytes: memory stays bounded whatever the backlog.

// stageMax bounds the bytes staged (one buffer; the writer holds the
// other). An entry larger than that is staged alone.
const stageMax = 1 << 20

// stageLocked copies the entry head+body into the stage as a frame and
// returns its ID.
// The frame's length and ID are written now, its CRC (which depends on the
// segment it lands in) by the writer. wmu is held; room was checked.
func (s *Spool) stageLocked(head, body []byte) ID {
	id := s.nextID
	s.nextID++
	if len(s.stage) == 0 {
		s.stageFirst = id
	}
	need := int64(frameHeaderSize + len(head) + len(body))
	var hdr [frameHeaderSize]byte
	binary.LittleEndian.PutUint32(hdr[4:8], uint32(len(head)+len(body)))
	binary.LittleEndian.PutUint64(hdr[8:16], uint64(id))
	n := len(s.stage)
	if want := n + int(need); cap(s.stage) < want {
		// Grown by doubling from 64 KiB, but never past stageMax (or
		// the one entry): append's own growth would overshoot it.
		c := min(max(2*cap(s.stage), 64<<10, want), max(stageMax, want))
		s.stage = append(make([]byte, 0, c), s.stage...)
	}
	s.stage = append(append(append(s.stage, hdr[:]...), head...), body...)
	s.kickWriterLocked(n)
	s.staged.Add(need)
	s.free.Add(-need)
	s.st.stagedEntries.Add(1)
	s.st.entries.Add(1)
	s.st.appended.Add(1)
	return id
}

// waitStageLocked waits, with wmu released, until the writer takes the
// stage or fails a write (the caller then meets when_full: see
// stageStuckLocked), ctx is done or the spool closes. wmu is held.
func (s *Spool) waitStageLocked(ctx context.Context) error {
	return s.waitForWriterLocked(ctx, s.stageEv.wait(), s.failedEv.wait())
}

// waitForWriterLocked kicks the writer and waits, with wmu released, until
// a or b (nil: none) fires, ctx is done or the spool closes. wmu is held.
func (s *Spool) waitForWriterLocked(ctx context.Context, a, b <-chan struct{}) error {
	s.kick(s.kickWrite)
	s.wmu.Unlock()
	var err error
	select {
	case <-a:
	case <-b:
	case <-s.closing:
	case <-ctx.Done():
		err = fmt.Errorf("spool: waiting for the writer: %w", context.Cause(ctx))
	}
	s.wmu.Lock()
	return err
}

// stageKick is the stage size at which an appender wakes the writer; below
// it the writer lets the stage fill for up to stageLinger first. write(2)
// of one 50 KiB aggregate costs about twice per byte what a 1 MiB run does
// (page-cache allocation per call), and waking the writer per aggregate
// cost the appender (the source) more in scheduling than the copy itself.
// The linger delays nothing that waits: Sync, Ack and flushes of a staged
// entry ask for the stage at once (flushWaiters), and Durable moves only
// every sync_interval anyway.
const (
	stageKick   = 256 << 10
	stageLinger = time.Millisecond
	// stageIdleRelease is how long a writer with nothing to do keeps its
	// buffers (up to 3 × stageMax; they grow with the rate, from the size
	// of one entry). A flow that went quiet gives them back.
	stageIdleRelease = 5 * time.Second
)

// kickWriter wakes the writer when it sleeps with nothing staged, or when
// the stage has grown past stageKick. wmu is held; n is the stage's size
// before the entry just staged.
func (s *Spool) kickWriterLocked(n int) {
	if (n < stageKick && len(s.stage) >= stageKick) || s.wIdle.CompareAndSwap(true, false) {
		s.kick(s.kickWrite)
	}
}

// runWriter writes staged frames until Close, then what is left.
func (s *Spool) runWriter() {
	defer s.wg.Done()
	// Three buffers turn: the stage (appenders fill it), own (being
	// written) and the one recent points into (readers may copy from it).
	// Once own is written it becomes recent's, and the buffer recent held
	// before is free for the stage.
	var own, spare []byte
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	for {
		s.wmu.Lock()
		closed := s.closed
		n := len(s.stage)
		if n == 0 && !closed {
			s.wIdle.Store(true) // under wmu: an appender sees it after its entry is in
		}
		s.wmu.Unlock()
		if n == 0 {
			if closed {
				return
			}
			idle.Reset(s.idleRelease)
			select {
			case <-s.kickWrite:
			case <-s.closing:
			case <-idle.C:
				// A flow that went quiet gives its buffers back; they
				// grow again with the next burst.
				spare = nil
				s.releaseIdleBuffers()
				select {
				case <-s.kickWrite:
				case <-s.closing:
				}
			}
			idle.Stop()
			s.wIdle.Store(false)
			continue
		}
		if n < stageKick && !closed && s.flushWaiters.Load() == 0 {
			linger.Reset(stageLinger)
			select {
			case <-s.kickWrite:
			case <-linger.C:
			case <-s.closing:
			}
			linger.Stop()
		}
		if s.beforeTake != nil {
			s.beforeTake()
		}
		var first ID
		s.wmu.Lock()
		own, s.stage = s.stage, spare[:0]
		first = s.stageFirst
		s.wmu.Unlock()
		s.stageEv.broadcast()
		prev := s.recent.buf // only this goroutine changes recent
		s.writeAll(own, first)
		// Once a run of own is recent, the buffer recent pointed into
		// before is free; if nothing of own was written, own is.
		s.recentMu.RLock()
		if s.recent.buf != nil && &s.recent.buf[:1][0] == &own[:1][0] {
			spare = prev
		} else {
			spare = own
		}
		s.recentMu.RUnlock()
		own = nil
		if cap(spare) > 2*stageMax { // grown for one large entry
			spare = nil
		}
	}
}

// releaseIdleBuffers drops the buffers of a writer that has been idle for
// stageIdleRelease: the stage, if still empty, and the recent run.
func (s *Spool) releaseIdleBuffers() {
	s.wmu.Lock()
	if len(s.stage) == 0 {
		s.stage = nil
	}
	s.wmu.Unlock()
	s.recentMu.Lock()
	s.recent = recentRun{}
	s.recentMu.Unlock()
}

// recentRun is a run of frames as written to segment g at offset off:
// data, a part of buf (one of the writer's buffers).
type recentRun struct {
	g    *segment
	off  int64
	data []byte
	buf  []byte
}

// readRecent copies into b the bytes of segment g at off, if the last run
// the writer wrote holds all of them, and reports whether it did. Those are
// the very bytes written: their frames need no second CRC check.
func (s *Spool) readRecent(g *segment, b []byte, off int64) bool {
	s.recentMu.RLock()
	defer s.recentMu.RUnlock()
	r := &s.recent
	if r.g != g || off < r.off || off+int64(len(b)) > r.off+int64(len(r.data)) {
		return false
	}
	copy(b, r.data[off-r.off:])
	return true
}

// writeAll writes the frames in b, the first with ID first, trying again
// until they are written, the spool fails, or Close comes and one more try
// fails. Each run written becomes the recent one (readRecent) before
// readers can see it.
func (s *Spool) writeAll(b []byte, first ID) {
	own := b
	for len(b) > 0 {
		if ferr := s.failure(); ferr != nil {
			s.loseStaged(s.withRestOfStage(b), first, ferr)
			return
		}
		s.fmu.Lock()
		n, next, err := s.writeStagedLocked(b, first, own)
		s.fmu.Unlock()
		b, first = b[n:], next
		// A recovery is recorded before anyone is woken: a Sync woken by
		// the frames written must not find the writer still failing.
		recovered := err == nil && s.wfailing.Load()
		if recovered {
			s.wfailing.Store(false)
			s.wmu.Lock()
			s.writeWorkedLocked()
			s.wmu.Unlock()
			s.checkRoomAgain()
		}
		if n > 0 {
			s.dataEv.broadcast()
			s.writtenEv.broadcast()
		}
		if recovered {
			s.spaceEv.broadcast() // appenders that met a stuck stage (stageStuckLocked)
		}
		if err == nil {
			continue
		}
		lose := s.failure() != nil || s.closedFlag.Load()
		s.wfailing.Store(true)
		var retry <-chan struct{}
		if !lose {
			// Recorded before anyone is woken: an appender woken by the
			// failure must find the spool full (noSpace, refErr).
			retry = s.noteWriteFailure(err, int64(frameHeaderSize)+int64(binary.LittleEndian.Uint32(b[4:8])))
		}
		s.writtenEv.broadcast()
		s.failedEv.broadcast()
		if lose {
			s.loseStaged(s.withRestOfStage(b), first, err)
			return
		}
		s.waitToRetry(err, retry)
	}
}

// waitWriterLocked waits, with wmu released, until the writer publishes
// frames or fails a write, ctx is done or the spool closes; not at all if
// cond no longer holds once the wait has begun (the writer is not under
// wmu: it may have done so between the caller's look and the wait). wmu is
// held.
func (s *Spool) waitWriterLocked(ctx context.Context, cond func() bool) error {
	ch := s.writtenEv.wait()
	if !cond() {
		return nil // look again
	}
	s.flushWaiters.Add(1)
	defer s.flushWaiters.Add(-1)
	return s.waitForWriterLocked(ctx, ch, nil)
}

// writerRefusedLocked reports whether the writer retries a write that
// failed with anything but ENOSPC (refErr stays set until a write
// succeeds). wmu is held.
func (s *Spool) writerRefusedLocked() bool {
	return s.wb && s.wfailing.Load() && s.refErr != nil
}

// noteWriteFailure records a failed write of a run whose first frame is
// need bytes: the spool is full for new entries until a deletion or a
// free-space check (ENOSPC, for which it returns the channel a deletion
// closes) or the backoff has passed (anything else). ENOSPC is logged once
// per full episode (full.go), not at every retry.
func (s *Spool) noteWriteFailure(err error, need int64) <-chan struct{} {
	if isNoSpace(err) {
		ch := s.spaceEv.wait()
		s.noSpace.Store(true)
		s.wmu.Lock()
		if s.startFullLocked(need, true) {
			s.logFullLocked("spool: disk full (ENOSPC); accepted entries wait in memory to be written", "error", err)
		}
		s.wmu.Unlock()
		return ch
	}
	// A directory made read-only (refused.go), or an I/O error: appends
	// see the spool as full while the backoff lasts.
	s.wmu.Lock()
	s.refusedLocked(err)
	s.wmu.Unlock()
	return nil
}

// waitToRetry waits, after noteWriteFailure, until it is worth trying
// again: room may have been made (ch, ENOSPC), the backoff passed
// (anything else), or Close came.
func (s *Spool) waitToRetry(err error, ch <-chan struct{}) {
	wait := maxMaintainEvery
	if !isNoSpace(err) {
		s.wmu.Lock()
		wait = max(time.Until(s.refUntil), time.Millisecond)
		s.wmu.Unlock()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
		if isNoSpace(err) {
			s.measureFreeIfStale()
		}
	case <-s.closing:
	}
}

// withRestOfStage returns b followed by what the stage holds, and empties
// the stage: once the writer gives up (Close, a failed fsync) nothing more
// is accepted, and one report covers all that is lost.
func (s *Spool) withRestOfStage(b []byte) []byte {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if len(s.stage) == 0 {
		return b
	}
	all := append(append(make([]byte, 0, len(b)+len(s.stage)), b...), s.stage...)
	s.stage = s.stage[:0]
	return all
}

// loseStaged counts and reports staged frames that will never be written,
// the first with ID first. Durable stops short of them for good: a
// checkpoint must never cover them.
func (s *Spool) loseStaged(b []byte, first ID, why error) {
	for {
		cur := s.lostFrom.Load()
		if (cur != 0 && cur <= uint64(first)) || s.lostFrom.CompareAndSwap(cur, uint64(first)) {
			break
		}
	}
	var n int64
	for off := 0; off+frameHeaderSize <= len(b); n++ {
		off += frameHeaderSize + int(binary.LittleEndian.Uint32(b[off+4:off+8]))
	}
	s.staged.Add(-int64(len(b)))
	s.free.Add(int64(len(b)))
	s.st.stagedEntries.Add(-n)
	s.st.entries.Add(-n)
	s.st.unwritten.Add(uint64(n))
	s.log.Error("spool: accepted entries could not be written and are lost; sources that can read again do so after the next start",
		"dir", s.dir, "entries", n, "bytes", len(b), "error", why)
	s.writtenEv.broadcast()
}

// writeStagedLocked writes frames from the start of b (the first with ID
// first) to the active segment, rolling as segments fill, one write(2) per
// run of frames that go into one segment. It returns the bytes of b written
// and the ID of the next frame; on error, what was not written stays for the
// next call (a partial write is cut off again). fmu is held.
func (s *Spool) writeStagedLocked(b []byte, first ID, buf []byte) (int, ID, error) {
	done := 0
	for done < len(b) {
		// Frames before first lost (loseStaged, at Close) leave a gap in
		// the IDs, which a segment cannot have: the next ones start a new
		// segment.
		if s.active == nil || s.broken || first != s.wnext {
			s.wnext = first
			if err := s.rollLocked(); err != nil {
				return done, first, err
			}
		}
		g := s.active
		end, id, off := g.end, first, done
		for off < len(b) {
			need := int64(frameHeaderSize) + int64(binary.LittleEndian.Uint32(b[off+4:off+8]))
			if end > segHeaderSize && end+need+sealFrameSize > int64(s.cfg.SegmentBytes) {
				break
			}
			fr := b[off : off+int(need)]
			c := crc32.Update(g.hdr.salt, castagnoli, fr[4:])
			binary.LittleEndian.PutUint32(fr[0:4], c)
			off += int(need)
			end += need
			id++
		}
		if off == done { // the segment is full
			if err := s.rollLocked(); err != nil {
				return done, first, err
			}
			continue
		}
		n, err := s.wf.Write(b[done:off])
		if err != nil {
			s.cutLocked(g, n)
			return done, first, err
		}
		size := int64(off - done)
		s.recentMu.Lock()
		s.recent = recentRun{g: g, off: g.end, data: b[done:off], buf: buf}
		s.recentMu.Unlock()
		s.publishLocked(g, id-1, int64(id-first), size, false)
		s.staged.Add(-size)
		s.st.stagedEntries.Add(-int64(id - first))
		done, first = off, id
	}
	return done, first, nil
}

// flushStage waits until every entry accepted so far is written (see
// waitWritten).
func (s *Spool) flushStage() error {
	if !s.wb {
		return nil
	}
	s.wmu.Lock()
	target := s.nextID - 1
	s.wmu.Unlock()
	return s.waitWritten(target)
}

// waitWritten waits until the entry id is written to a segment. It returns
// ErrUnknownID for an ID never handed out, the writer's error at once when
// the writer is failing (it goes on trying), and ErrClosed when the spool
// closes meanwhile.
func (s *Spool) waitWritten(id ID) error {
	if ID(s.lastID.Load()) >= id {
		return nil
	}
	s.wmu.Lock()
	accepted := id < s.nextID
	s.wmu.Unlock()
	if !s.wb || !accepted {
		return fmt.Errorf("%w: %d", ErrUnknownID, id)
	}
	s.flushWaiters.Add(1)
	defer s.flushWaiters.Add(-1)
	s.kick(s.kickWrite)
	for {
		ch := s.writtenEv.wait()
		if ID(s.lastID.Load()) >= id {
			return nil
		}
		if err := s.failure(); err != nil {
			return err
		}
		if lf := s.lostFrom.Load(); lf != 0 && uint64(id) >= lf {
			return fmt.Errorf("spool: entry %d was never written (lost at close)", id)
		}
		if s.wfailing.Load() {
			return fmt.Errorf("spool: %d entries accepted and not yet written: the writer is retrying a failed write", s.st.stagedEntries.Load())
		}
		select {
		case <-ch:
		case <-s.closing:
			return ErrClosed
		}
	}
}
