package spool

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/kplagent/agent/internal/units"
)

// wbufMax is the largest frame assembled in memory and written with one
// write(2). Larger entries are written as header then payload; a crash
// between the two is a torn tail like any other.
const wbufMax = 1 << 20

// Append writes a copy of entry and returns its ID. With SyncAlways it
// returns once the entry is fsynced, sharing the fsync with concurrent
// appenders; ctx is then no longer consulted, so that a nil error always
// means accepted and an error always means not accepted (an entry whose
// fsync failed may still be delivered: at-least-once).
//
// With SyncInterval and SyncNever, Append copies the frame into the
// write-behind stage and returns: the writer goroutine writes it
// (writebehind.go). Readers, Ack and Durable see an entry once it is
// written; room (max_bytes, the free-disk floor) is counted when it is
// accepted.
//
// When the spool is full (max_bytes, the free-disk floor, or ENOSPC), Append
// follows when_full: block waits for room until ctx is done; drop_newest
// returns an error wrapping ErrFull; drop_oldest deletes the oldest segment
// and goes on. An entry over max_entry_bytes gets ErrTooLarge.
func (s *Spool) Append(ctx context.Context, entry []byte) (ID, error) {
	return s.AppendParts(ctx, entry, nil)
}

// AppendParts is Append of the entry head followed by body, without the
// caller joining them first: the spool copies each once.
func (s *Spool) AppendParts(ctx context.Context, head, body []byte) (ID, error) {
	if n := int64(len(head) + len(body)); n > s.maxEntry {
		return 0, fmt.Errorf("%w: %d bytes, max_entry_bytes is %d", ErrTooLarge, n, s.maxEntry)
	}
	s.wmu.Lock()
	id, err := s.appendLocked(ctx, head, body)
	s.wmu.Unlock()
	if err != nil {
		return 0, err
	}
	if s.wb {
		return id, nil // stageLocked woke the writer if it needs waking
	}
	s.dataEv.broadcast()
	if s.cfg.Sync == SyncAlways {
		s.kick(s.kickSync)
		if err := s.waitSynced(id); err != nil {
			return 0, err
		}
	}
	return id, nil
}

func (s *Spool) appendLocked(ctx context.Context, head, body []byte) (ID, error) {
	need := int64(frameHeaderSize + len(head) + len(body))
	for {
		if s.closed {
			return 0, ErrClosed
		}
		if err := s.failure(); err != nil {
			return 0, err
		}
		if !s.roomLocked(need) {
			if err := s.whenFullLocked(ctx, need); err != nil {
				return 0, err
			}
			continue
		}
		if s.wb {
			// A full stage waits for the writer to take it, unless ctx is
			// done: a caller that stops (shutdown's last spills) still
			// gets an entry in that there is room for, and holds no more
			// than it already holds in memory.
			if len(s.stage) > 0 && len(s.stage)+int(need) > stageMax && ctx.Err() == nil {
				if err := s.waitStageLocked(ctx); err != nil {
					return 0, err
				}
				continue
			}
			id := s.stageLocked(head, body)
			if !s.wfailing.Load() { // else it is not written yet, and may not be
				s.endFullLocked("append")
			}
			return id, nil
		}
		s.fmu.Lock()
		id, err := s.writeLocked(head, body)
		s.fmu.Unlock()
		if err == nil {
			s.nextID = id + 1
			s.free.Add(-need)
			s.writeWorkedLocked()
			s.endFullLocked("append")
			return id, nil
		}
		switch {
		case isNoSpace(err):
			// The disk is full whatever statfs said: behave as full until
			// the maintainer measures again or a segment is deleted.
			s.noSpace.Store(true)
			if s.startFullLocked(need, true) { // once per episode: "room again" ends it
				s.logFullLocked("spool: disk full (ENOSPC)", "error", err)
			}
		case isRefused(err):
			// A directory made read-only: wait and try again (refused.go).
			s.refusedLocked(err)
		default:
			return 0, fmt.Errorf("spool: append: %w", err)
		}
	}
}

// roomLocked reports whether a frame of need bytes fits under max_bytes and
// above the free-disk floor. The seal a segment gets when it is closed is
// counted in advance.
func (s *Spool) roomLocked(need int64) bool {
	if s.noSpace.Load() || s.refusingLocked() || s.stageStuckLocked(need) {
		return false
	}
	need += sealFrameSize
	if s.st.bytes.Load()+s.staged.Load()+need > int64(s.cfg.MaxBytes) {
		return false
	}
	return s.minFree == 0 || s.free.Load()-need >= s.minFree
}

// stageStuckLocked reports whether the entry would wait for the writer to
// take a full stage while the writer retries a failed write: it takes the
// stage only once a write succeeds, so the entry meets when_full rather
// than waiting (drop_newest never holds an appender; block waits for room
// and is woken when the writer succeeds again). A free-space check lifts
// the ENOSPC stop while the writer may still be failing. wmu is held.
func (s *Spool) stageStuckLocked(need int64) bool {
	return s.wb && s.wfailing.Load() && len(s.stage) > 0 && len(s.stage)+int(need) > stageMax
}

// whenFullLocked applies when_full. It returns nil when the caller should
// look for room again, or the error Append returns.
func (s *Spool) whenFullLocked(ctx context.Context, need int64) error {
	// Segments finished by acks may still wait for the maintainer to
	// delete them, or be in the middle of it: finish that first (delMu
	// serialises it), rather than drop or wait.
	s.deleteDone()
	if s.roomLocked(need) {
		return nil
	}
	// Acknowledged entries in the active segment are freed only by a roll:
	// without it an entry that needs their room would wait forever,
	// although everything is acknowledged. Likewise a finished segment
	// left newest by a failed roll goes once a newer segment exists.
	if rolled, err := s.rollIfActiveDone(); rolled {
		if err != nil {
			if ferr := s.failure(); ferr != nil {
				return ferr
			}
			switch {
			case isNoSpace(err):
				s.noSpace.Store(true)
			case isRefused(err):
				s.refusedLocked(err)
			}
			// Else the next write tries to start a segment again and
			// returns what stops it.
		}
		s.deleteDone()
		if s.roomLocked(need) {
			return nil
		}
	}
	reason := s.fullReasonLocked(need)
	switch s.cfg.WhenFull {
	case WhenFullDropOldest:
		// The stage waits for a writer that failed with ENOSPC, and the
		// stop is lifted (a drop, a free-space check): its next attempt
		// tells whether the room made is enough. Dropping again before it
		// would drop one segment after another, for nothing.
		stuck := func() bool {
			return s.stageStuckLocked(need) && !s.noSpace.Load() && !s.writerRefusedLocked()
		}
		if stuck() {
			return s.waitWriterLocked(ctx, stuck)
		}
		// A directory that refuses writes refuses deletions too: dropping
		// would lose entries and free nothing. Nor while the writer
		// retries an I/O error: that frees nothing either (ENOSPC, which
		// a deletion cures, is noSpace).
		if !s.refusingLocked() && !s.writerRefusedLocked() && s.dropOldestLocked(reason, need) {
			return nil
		}
		if err := s.failure(); err != nil { // the roll before the drop saw it
			return err
		}
		// The room is held by entries still staged, which cannot be
		// dropped until they are written: wait for the writer rather than
		// refuse the newest entry.
		behind := func() bool { return s.wb && !s.wfailing.Load() && s.staged.Load() > 0 }
		if behind() {
			return s.waitWriterLocked(ctx, behind)
		}
	case WhenFullBlock:
		return s.waitRoomLocked(ctx, need, reason)
	}
	s.st.droppedNewest.Add(1)
	s.lg.dropped(0, 1, reason, need)
	return fmt.Errorf("%w: %s", ErrFull, reason)
}

// rollIfActiveDone rolls the active segment when it has entries and all of
// them are done (a roll frees it whole), or when there is none. It reports
// whether it tried, and the roll's error. wmu is held. A directory that
// refuses writes is not tried again before its backoff. Frames still
// staged go to the new segment: it starts at the next ID written.
func (s *Spool) rollIfActiveDone() (bool, error) {
	if s.refusingLocked() || !s.mayRollActiveDone() {
		return false, nil
	}
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.active != nil && !s.activeDoneLocked() {
		return false, nil
	}
	return true, s.rollLocked()
}

// mayRollActiveDone is rollIfActiveDone's look without fmu, which the writer
// holds across its write(2): an appender about to refuse or drop an entry
// (drop_newest, drop_oldest) must not wait for the disk to decide it, and
// needs fmu only when a roll would free the active segment, or start one
// where there is none. active changes under syncMu too (rollLocked,
// sealActiveLocked), so it can be read under it; the answer is checked
// again under fmu.
func (s *Spool) mayRollActiveDone() bool {
	s.syncMu.Lock()
	g := s.active
	s.syncMu.Unlock()
	if g == nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return g.last >= g.hdr.first && g.allDone()
}

// activeDoneLocked reports whether the active segment has entries and all
// of them are done, so that a roll frees it whole. fmu is held.
func (s *Spool) activeDoneLocked() bool {
	g := s.active
	if g == nil || g.last < g.hdr.first {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return g.allDone()
}

func (s *Spool) fullReasonLocked(need int64) string {
	switch {
	case s.refusingLocked():
		return fmt.Sprintf("the directory refuses writes (%v)", s.refErr)
	case s.noSpace.Load():
		return "no space left on device"
	case s.st.bytes.Load()+s.staged.Load()+need+sealFrameSize > int64(s.cfg.MaxBytes):
		return fmt.Sprintf("max_bytes (%s) reached", s.cfg.MaxBytes)
	case s.stageStuckLocked(need):
		return "accepted entries wait in memory: the writer retries a failed write"
	default:
		return fmt.Sprintf("free disk below min_free_bytes (%s)", units.ByteSize(s.minFree))
	}
}

// waitRoomLocked waits, with wmu released, until room may have been made,
// ctx is done or the spool closes. It wakes by itself when a refused write
// may be tried again, and at least every maxMaintainEvery whatever the
// reason: room that acks do not bring back (a disk filled by others, a
// deletion that failed) must be looked for again rather than waited for.
func (s *Spool) waitRoomLocked(ctx context.Context, need int64, reason string) error {
	ch := s.spaceEv.wait()
	if s.roomLocked(need) {
		return nil // freed between the check and the wait
	}
	wake := maxMaintainEvery
	if s.refErr != nil {
		wake = max(time.Until(s.refUntil), time.Millisecond)
	} else if s.startFullLocked(need, false) {
		s.logFullLocked("spool: full, appends wait for room", "reason", reason)
	}
	s.st.blocked.Add(1)
	s.blockedEv.broadcast()
	s.wmu.Unlock()
	t := time.NewTimer(wake)
	var err error
	select {
	case <-ch:
	case <-t.C:
		s.measureFreeIfStale()
	case <-s.closing:
	case <-ctx.Done():
		err = fmt.Errorf("spool: waiting for room (%s): %w", reason, context.Cause(ctx))
	}
	t.Stop()
	s.wmu.Lock()
	s.st.blocked.Add(-1)
	return err
}

// dropOldestLocked deletes the oldest segment to make room and counts its
// unacknowledged entries. When only one segment is left a new one is started
// first: the newest segment file is what carries IDs across restarts. It
// reports false when there is nothing to drop, or no new segment can be
// started. need is the frame size of the entry that needs the room.
func (s *Spool) dropOldestLocked(reason string, need int64) bool {
	s.mu.Lock()
	var g *segment
	if len(s.segs) > 0 {
		g = s.segs[0]
	}
	only := len(s.segs) == 1
	s.mu.Unlock()
	if g == nil {
		return false
	}
	if only {
		s.fmu.Lock()
		if g == s.active && g.last < g.hdr.first { // empty: dropping it frees nothing
			s.fmu.Unlock()
			return false
		}
		err := s.rollLocked()
		s.fmu.Unlock()
		if err != nil {
			s.log.Warn("spool: cannot start a new segment, so cannot drop the only one", "error", err)
			return false
		}
	}
	// Neither an ack write in progress (ackMu, held across its fsync) nor
	// a busy reader (rmu, held across its reads) is waited for: out of the
	// table under mu, g is this caller's to delete. An ack write for it
	// removes what it wrote once done (ackWritten); a reader in the
	// middle of g returns what it read (an ID that Ack then ignores:
	// dropped) and moves on to the next segment.
	s.mu.Lock()
	if g.removed { // retired by an ack meanwhile
		s.mu.Unlock()
		return true
	}
	lost := g.count() - g.done.n
	s.removeLocked(g)
	s.mu.Unlock()
	s.st.entries.Add(-lost)
	s.st.droppedOldest.Add(uint64(lost))
	if err := s.removeFilesLocked(g); err != nil {
		s.mu.Lock()
		s.toDelete = append(s.toDelete, g) // deleteDone tries again
		s.mu.Unlock()
		s.st.writeErrors.Add(1)
		s.deleteErrLog.failed(err, "dir", s.dir, "segments", 1)
	}
	// A reader still open on it would keep its blocks allocated, and the
	// next write would hit ENOSPC again and drop another segment: it
	// closes the file now, or as soon as its read in progress is done.
	s.releaseRemovedCursor()
	s.noSpace.Store(false)
	s.lg.dropped(uint64(lost), 0, reason, need)
	s.spaceEv.broadcast()
	return true
}

// writeLocked writes one frame to the active segment, rolling first when the
// segment is full, and publishes it. On error nothing was added: a partial
// frame is cut off again, or the segment is marked broken and left behind
// at the next append. fmu is held (and wmu: the synchronous path).
func (s *Spool) writeLocked(head, body []byte) (ID, error) {
	need := int64(frameHeaderSize + len(head) + len(body))
	if s.active == nil || s.broken || (s.active.end > segHeaderSize && s.active.end+need+sealFrameSize > int64(s.cfg.SegmentBytes)) {
		if err := s.rollLocked(); err != nil {
			return 0, err
		}
	}
	g, id := s.active, s.wnext
	var err error
	var n int
	if need <= wbufMax {
		s.wbuf = append(append(append(s.wbuf[:0], make([]byte, frameHeaderSize)...), head...), body...)
		putFrameHeader(s.wbuf[:frameHeaderSize], g.hdr.salt, id, s.wbuf[frameHeaderSize:])
		n, err = s.wf.Write(s.wbuf)
	} else {
		// Header and head in one write, then the body as it is.
		s.wbuf = append(append(s.wbuf[:0], make([]byte, frameHeaderSize)...), head...)
		putFrameHeaderParts(s.wbuf[:frameHeaderSize], g.hdr.salt, id, head, body)
		if n, err = s.wf.Write(s.wbuf); err == nil {
			var m int
			m, err = s.wf.Write(body)
			n += m
		}
	}
	if err != nil {
		s.cutLocked(g, n)
		return 0, err
	}
	s.publishLocked(g, id, 1, need, true)
	return id, nil
}

// cutLocked takes back a write that failed after n bytes: the partial
// frames are truncated off, or the segment is marked broken (rolled before
// the next write; recovery cuts the torn tail). fmu is held.
func (s *Spool) cutLocked(g *segment, n int) {
	if n > 0 {
		if terr := s.wf.Truncate(g.end); terr != nil {
			s.broken = true
		}
	}
}

// publishLocked makes n frames written at the end of g, up to last and
// size bytes in all, visible: to readers, Ack, the counters, and with
// SyncNever Durable. counted is false when the entries were counted when
// they were accepted (write-behind). fmu is held.
func (s *Spool) publishLocked(g *segment, last ID, n int64, size int64, counted bool) {
	s.wnext = last + 1
	// Published together under mu: once a reader can see the frame, Ack
	// must know its ID and the counters must include it.
	s.mu.Lock()
	g.last = last
	g.end += size
	g.size += size
	s.lastID.Store(uint64(last))
	if counted {
		s.st.entries.Add(n)
		s.st.appended.Add(uint64(n))
	}
	s.st.bytes.Add(size)
	s.mu.Unlock()
	if s.cfg.Sync == SyncNever && s.failure() == nil {
		s.advanceDurable(last)
	}
}

// rollLocked closes the active segment (sealing it), if there is one, and
// starts a new one at the next ID written (wnext). fmu is held. Only then may the previous segment be retired
// if it is done: the newest segment file is what keeps IDs growing across
// restarts, so a failed create leaves it in place (active stays nil and the
// next write tries again).
func (s *Spool) rollLocked() error {
	if g := s.active; g != nil && g.last < g.hdr.first && g.hdr.first == s.wnext {
		// Empty and starting where the next frame goes: a new segment
		// would have the same name. A caller that decided to roll before
		// it took fmu (dropOldestLocked) finds the writer rolled already.
		// A broken one is repaired under its name instead.
		if s.broken {
			return s.repairActiveLocked()
		}
		return nil
	}
	if s.active != nil {
		if err := s.sealActiveLocked(); err != nil {
			return err
		}
	} else if err := s.failure(); err != nil {
		return err
	}
	g, f, err := s.createSegment(s.wnext)
	if err != nil {
		return err
	}
	s.syncMu.Lock() // syncData reads wf under syncMu
	s.active, s.wf, s.broken = g, f, false
	s.syncMu.Unlock()
	s.mu.Lock()
	kick := false
	if n := len(s.segs); n >= 2 {
		kick = s.retireIfDoneLocked(s.segs[n-2])
	}
	s.mu.Unlock()
	if kick {
		s.kick(s.kickMaint)
	}
	return nil
}

// sealActiveLocked writes the seal, syncs and closes the active segment, and
// marks it sealed. It stays in the table, done or not, until a newer segment
// exists (rollLocked). An empty segment gets no seal, and neither does a
// broken one. Sealing is best effort: a segment without its seal is scanned at the
// next Open instead. Only a failed fsync is an error, this one's or an
// earlier one's: after it nothing more is written, so no new segment either.
func (s *Spool) sealActiveLocked() error {
	g := s.active
	var extra int64
	if !s.broken && g.last >= g.hdr.first {
		b := appendSeal(s.wbuf[:0], g.hdr, g.last, g.end)
		if n, err := s.wf.Write(b); err == nil {
			extra = int64(len(b))
		} else if n > 0 {
			_ = s.wf.Truncate(g.end) // else the next Open cuts it as a torn tail
		}
	}
	// The fsync of the sealed file (up to a sync_interval of appends, or a
	// whole segment with sync: never) is the syncer's, off the appenders'
	// path: done here it held every appender (and with them the sources)
	// for as long as the disk took. Durable moves past the segment only
	// once it is done (syncData); recovery fsyncs what a kill -9 left
	// sealed and unsynced. Only the hand-over takes syncMu: a round in
	// progress holds roundMu, not syncMu, across its fsyncs.
	s.syncMu.Lock()
	s.sealed = append(s.sealed, sealedFile{g: g, f: s.wf})
	s.active, s.wf = nil, nil
	s.syncMu.Unlock()

	s.mu.Lock()
	g.sealed = true
	g.size += extra
	s.mu.Unlock()
	s.st.bytes.Add(extra)
	s.free.Add(-extra)
	s.kick(s.kickSync)
	return s.failure()
}

// createSegment creates the segment file for first, writes and fsyncs its
// header and makes its directory entry durable, then adds it to the table.
func (s *Spool) createSegment(first ID) (*segment, file, error) {
	h := segHeader{first: first, salt: rand.Uint32()}
	path := filepath.Join(s.dir, segName(first))
	// The header is fsynced before the directory entry: once the entry is
	// durable, the file must say which IDs it starts at. The previous
	// segment may be deleted as soon as this one exists, and then this
	// file's name and header are all that keeps IDs growing across a
	// restart; an empty file left by a power cut is removed at Open and
	// would let IDs be handed out again.
	f, err := s.createFile(path, h, os.O_EXCL)
	if err == nil {
		if err = s.fs.SyncDir(s.dir); err != nil {
			f.Close()
			_ = s.fs.Remove(path)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("create segment: %w", err)
	}
	g := &segment{hdr: h, path: path, last: first - 1, end: segHeaderSize, size: segHeaderSize}
	s.mu.Lock()
	s.segs = append(s.segs, g)
	s.mu.Unlock()
	s.st.bytes.Add(segHeaderSize)
	s.st.segments.Add(1)
	s.free.Add(-segHeaderSize)
	return g, f, nil
}

// createFile creates path (flag: O_EXCL, or O_TRUNC for a temporary file),
// open for append, and writes and fsyncs the header h. On error nothing is
// left behind.
func (s *Spool) createFile(path string, h segHeader, flag int) (file, error) {
	f, err := s.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND|flag, 0o600)
	if err != nil {
		return nil, err
	}
	b := h.encode()
	_, err = f.Write(b[:])
	if err == nil {
		err = f.Sync()
		s.st.fsyncs.Add(1)
	}
	if err != nil {
		f.Close()
		_ = s.fs.Remove(path)
		return nil, err
	}
	return f, nil
}

// tmpSuffix names the clean file that replaces a broken empty segment
// (repairActiveLocked) until it is renamed over it; Open removes one left
// by a crash.
const tmpSuffix = ".tmp"

// repairActiveLocked makes the active segment, empty, starting at wnext and
// broken (a failed write left part of a frame at its end and the truncate
// that should have cut it failed), writable again under the same name. It
// cannot be rolled: the next segment would start at the same ID and have
// the same name. The partial frame is cut again; if that fails too, a clean
// file with the same header is written beside it, fsynced and renamed over
// it, so the file naming the next ID exists at every point of a crash (the
// newest segment is what keeps IDs growing across restarts; see
// createSegment). A reader with the old file open is moved to the new one.
// Errors are those of a roll: the caller backs off or waits for room and
// tries again. fmu is held.
func (s *Spool) repairActiveLocked() error {
	g := s.active
	if err := s.wf.Truncate(g.end); err == nil {
		s.broken = false
		return nil
	}
	tmp := g.path + tmpSuffix
	f, err := s.createFile(tmp, g.hdr, os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("replace broken segment: %w", err)
	}
	// Opened before the rename, so that nothing can fail once the old
	// file is gone.
	rf, err := s.fs.OpenFile(tmp, os.O_RDONLY, 0)
	if err == nil {
		if err = s.fs.Rename(tmp, g.path); err != nil {
			rf.Close()
		}
	}
	if err != nil {
		f.Close()
		_ = s.fs.Remove(tmp)
		return fmt.Errorf("replace broken segment: %w", err)
	}
	// The old file had the same header, so a crash before the rename is
	// durable leaves a file naming the same IDs either way. But frames are
	// about to be written to the new one, and fsynced frames must not
	// vanish with a rename the disk forgot: a failed directory fsync is a
	// failed fsync (the spool stops accepting until it is reopened).
	if err := s.fs.SyncDir(s.dir); err != nil {
		s.fail(err)
	}
	s.rmu.Lock()
	if c := &s.rd; c.g == g {
		if c.f != nil { // nil once its segment is removed (closeFile)
			c.f.Close()
		}
		c.f, c.fr = rf, newFrameReader(rf, g.hdr.salt, maxEntryLimit, c.buf)
		c.nextLen = 0
	} else {
		rf.Close()
	}
	s.rmu.Unlock()
	// The old file may be in a sync round's hands (syncData): a round
	// closes it, as it closes sealed files.
	s.syncMu.Lock()
	s.sealed = append(s.sealed, sealedFile{g: g, f: s.wf, replaced: true})
	s.wf, s.broken = f, false
	s.syncMu.Unlock()
	s.log.Warn("spool: replaced an empty segment whose torn end could not be cut off", "segment", g.path)
	return s.failure()
}
