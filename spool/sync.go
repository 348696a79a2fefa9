package spool

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// Durable returns the highest ID such that it and every ID below it are on
// disk per the sync policy: fsynced for always and interval; for never, the
// last appended ID (the OS decides when it reaches the disk).
func (s *Spool) Durable() ID { return ID(s.durable.Load()) }

// WaitDurable returns when id is durable (see Durable), when ctx is done, or
// when the spool closes or fails. It forces nothing: with SyncInterval the
// wait is at most one interval.
func (s *Spool) WaitDurable(ctx context.Context, id ID) error {
	for {
		ch := s.durableEv.wait()
		if s.Durable() >= id {
			return nil
		}
		if err := s.failure(); err != nil {
			return err
		}
		if s.closedFlag.Load() {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-s.closing:
			// Close syncs last; its broadcast decides.
			select {
			case <-ch:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// Sync writes everything appended so far and the pending acknowledgements to
// stable storage now, whatever the policy (the shutdown path).
//
// The acks that finished a segment are in no ack file: retiring the segment
// dropped them, and deleting its files is what makes them durable. That is
// the maintainer's job, which may not have run yet (a loaded machine), so
// Sync deletes retired segments too; otherwise a crash after Sync would
// deliver them again.
func (s *Spool) Sync() error {
	if s.closedFlag.Load() {
		return ErrClosed
	}
	if err := s.flushStage(); err != nil {
		return err
	}
	err := s.syncData()
	if aerr := s.flushAcks(); err == nil {
		err = aerr
	}
	if s.deleteDone() {
		if derr := s.fs.SyncDir(s.dir); err == nil && derr != nil {
			err = fmt.Errorf("spool: sync directory: %w", derr)
		}
	}
	return err
}

// waitSynced is SyncAlways' half of Append: wait for the syncer to cover id.
// Close syncs before it wakes waiters, so only a failure ends the wait early.
func (s *Spool) waitSynced(id ID) error {
	for {
		ch := s.durableEv.wait()
		// The failure first: an fsync failed, so this entry is not
		// accepted, whatever Durable says by the time we look.
		if err := s.failure(); err != nil {
			return err
		}
		if s.Durable() >= id {
			return nil
		}
		if s.finished.Load() {
			return ErrClosed
		}
		<-ch
	}
}

func (s *Spool) advanceDurable(id ID) {
	if lf := s.lostFrom.Load(); lf != 0 && uint64(id) >= lf {
		id = ID(lf - 1)
	}
	for {
		cur := s.durable.Load()
		if uint64(id) <= cur {
			return
		}
		if s.durable.CompareAndSwap(cur, uint64(id)) {
			s.durableEv.broadcast()
			return
		}
	}
}

// runSyncer is the group commit. With SyncAlways appenders write their frame
// and kick it; each round syncs everything written so far, so the appenders
// that arrive during one fdatasync share the next. With SyncInterval it runs
// on a ticker. SyncNever only syncs when a segment is sealed (kicked by the
// seal) and on Close.
func (s *Spool) runSyncer() {
	defer s.wg.Done()
	var tick <-chan time.Time
	if s.cfg.Sync == SyncInterval {
		t := time.NewTicker(s.cfg.SyncInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-s.closing:
			return
		case <-s.kickSync:
		case <-tick:
		}
		_ = s.syncData() // a failure is sticky and reported to every waiter
	}
}

// sealedFile is a sealed segment's file waiting for its fsync.
type sealedFile struct {
	g *segment
	f file
	// replaced: an old file of g, replaced by a clean one under the same
	// name (repairActiveLocked). It is only closed.
	replaced bool
}

// takeSealed hands the files sealed so far to the caller's round.
func (s *Spool) takeSealed() []sealedFile {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	ps := s.sealed
	s.sealed = nil
	return ps
}

// hasSealed reports whether sealed files wait for a round.
func (s *Spool) hasSealed() bool {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	return len(s.sealed) > 0
}

// syncSealed fsyncs and closes files taken by takeSealed, oldest first, and
// records a failure. A segment deleted meanwhile (all acknowledged) is only
// closed: nothing in it is needed again. Called with roundMu held, and
// without syncMu: closing a deleted file frees its blocks, and fsyncs take
// as long as the disk does; the writer, sealing the next segment, must wait
// for neither.
func (s *Spool) syncSealed(ps []sealedFile) {
	for _, p := range ps {
		s.mu.Lock()
		removed := p.g.removed
		s.mu.Unlock()
		if !removed && !p.replaced && s.failure() == nil {
			if err := p.f.Sync(); err != nil {
				s.fail(err)
			}
			s.st.fsyncs.Add(1)
		}
		p.f.Close()
	}
}

// syncData fdatasyncs the segments sealed since the last round and the
// active segment up to the last appended ID, and moves Durable there.
func (s *Spool) syncData() error {
	s.fmu.Lock()
	g, f, target := s.active, s.wf, s.wnext-1
	s.fmu.Unlock()
	if err := s.failure(); err != nil {
		return err
	}
	// Against what is fsynced, not Durable: with SyncNever Durable is the
	// last appended ID, and Sync must still write it to disk.
	if target <= ID(s.synced.Load()) {
		// Nothing new to sync, but a segment sealed since the last round
		// (a roll that found the active segment finished, with no append
		// after it) still has its file open: close it, or its blocks
		// stay allocated after its deletion, and on a small disk the
		// free space an append waits for never comes back.
		if s.hasSealed() {
			s.roundMu.Lock()
			s.syncSealed(s.takeSealed())
			s.roundMu.Unlock()
		}
		return nil
	}
	s.roundMu.Lock()
	defer s.roundMu.Unlock()
	// Every entry up to target is in a sealed file listed now (g, if it
	// was sealed meanwhile, and older ones; or taken by an earlier round,
	// which synced it or recorded a failure), or in g still active. f
	// stays open until a round closes it, and rounds are serialised: if
	// the writer seals g once we have looked, the next round closes it. A
	// failure is recorded, and Durable moved, under roundMu: a later fsync
	// must see the failure, or its own success would make the entries
	// whose pages the kernel dropped look durable.
	s.syncMu.Lock()
	ps := s.sealed
	s.sealed = nil
	active := g != nil && s.wf == f
	s.syncMu.Unlock()
	s.syncSealed(ps)
	if active {
		if err := f.Sync(); err != nil {
			s.fail(err)
		}
		s.st.fsyncs.Add(1)
	}
	if err := s.failure(); err != nil {
		return err
	}
	advance(&s.synced, target)
	s.advanceDurable(target)
	return nil
}

// advance moves v up to id, never down.
func advance(v *atomic.Uint64, id ID) {
	for {
		cur := v.Load()
		if uint64(id) <= cur || v.CompareAndSwap(cur, uint64(id)) {
			return
		}
	}
}

// runMaintainer writes acknowledgements every sync_interval, deletes
// finished segments when kicked, and re-measures free disk space, waking
// blocked appenders when there may be room again.
func (s *Spool) runMaintainer() {
	defer s.wg.Done()
	t := time.NewTicker(min(s.cfg.SyncInterval, maxMaintainEvery))
	defer t.Stop()
	lastFlush := time.Now()
	freeErrLogged := false
	for {
		select {
		case <-s.closing:
			return
		case <-s.kickMaint:
		case now := <-t.C:
			if err := s.measureFree(); err != nil && !freeErrLogged {
				freeErrLogged = true
				s.log.Warn("spool: cannot measure free disk space; min_free_bytes is not enforced", "error", err)
			}
			if now.Sub(lastFlush) >= s.cfg.SyncInterval-s.cfg.SyncInterval/8 {
				lastFlush = now
				if err := s.flushAcks(); err != nil {
					s.st.writeErrors.Add(1)
					s.ackErrLog.failed(err, "dir", s.dir)
				} else {
					s.ackErrLog.ok("spool: acknowledgements written again", "dir", s.dir)
				}
			}
		}
		s.deleteDone()
		s.probeRefused()
		s.checkRoomAgain()
		s.checkDropsStopped()
	}
}

// maxMaintainEvery bounds how stale the free-space figure gets and how long
// an append blocked by ENOSPC waits before trying again.
const maxMaintainEvery = time.Second

// measureFree refreshes the free-space figure and lifts an ENOSPC stop, then
// lets blocked appenders look again. When statfs fails the floor is not
// enforced rather than blocking forever.
func (s *Spool) measureFree() error {
	free, err := int64(1<<62), error(nil)
	if s.minFree > 0 {
		if free, _, err = s.fs.DiskSpace(s.dir); err != nil {
			free = 1 << 62
		}
	}
	s.free.Store(free - s.staged.Load())
	s.freeAt.Store(time.Now().UnixNano())
	s.noSpace.Store(false)
	blocked := s.st.blocked.Load() > 0
	if blocked {
		s.spaceEv.broadcast()
	}
	return err
}

// measureFreeIfStale is measureFree for a blocked appender woken by its
// timer: it measures only if the maintainer has not done so lately (it may
// be busy with a slow disk). Its error is the maintainer's to log.
func (s *Spool) measureFreeIfStale() {
	if time.Since(time.Unix(0, s.freeAt.Load())) >= maxMaintainEvery {
		_ = s.measureFree()
	}
}
