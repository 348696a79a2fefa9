package spool

import (
	"os"
	"path/filepath"
	"time"
)

// A "full" episode is logged once when it starts (WARN: "spool: disk full
// (ENOSPC)", or "spool: full, appends wait for room" with its reason) and
// once when it ends (INFO: "spool: room again, appends resume"). The end
// was noticed only by the next append accepted; with the direct path
// (spool_bypass) taking all the traffic once the destination keeps up again,
// none may come for hours, and the log said "disk full" with no end. The
// maintainer now looks at the end of each round (at most a second apart,
// after it has measured free space and deleted finished segments) whether
// an entry of the size that met the full spool would be accepted.
//
// Room after ENOSPC needs evidence: the free-space check lifts the ENOSPC
// stop every second (the next write tells), but a write that fails again
// must not end and restart the episode each second. So the episode ends only
// once the spool deleted a segment since the last ENOSPC, or statfs shows
// room for the entry above the free-disk floor (at least stageMax when
// min_free_bytes is 0), or a write succeeded. An append blocked for room,
// and a writer retrying a failed write, end it themselves when they succeed.

// fullEpisode is the state of a "full" episode. Guarded by wmu.
type fullEpisode struct {
	on      bool   // logged as started and not yet as ended
	need    int64  // the frame size of the entry that met it: room again is room for it
	noSpace bool   // a write failed with ENOSPC since the last success
	deletes uint64 // Spool.deletions at the last ENOSPC
	logged  bool   // its start was logged (logFullLocked): so is its end
}

// startFullLocked records that an entry of need bytes met a full spool
// (enospc: a write failed with ENOSPC), and reports whether that starts an
// episode, which the caller then logs. wmu is held.
func (s *Spool) startFullLocked(need int64, enospc bool) bool {
	if enospc {
		s.full.noSpace = true
		s.full.deletes = s.deletions.Load()
	}
	if s.full.on {
		return false
	}
	s.full.on, s.full.need = true, need
	s.fullOn.Store(true)
	return true
}

// endFullLocked ends the episode, if one is on, and logs its end: by says
// who noticed. wmu is held.
func (s *Spool) endFullLocked(by string) {
	if !s.full.on {
		return
	}
	logged := s.full.logged
	s.full = fullEpisode{}
	s.fullOn.Store(false)
	if logged {
		s.log.Info("spool: room again, appends resume", "noticed_by", by)
	}
}

// fullLogEvery bounds how often "full" episodes are logged: a small spool
// in front of a slower destination fills again and again, and agent tail
// printed a dozen "spool: full" lines a second while it drained a backlog.
const fullLogEvery = time.Minute

// logFullLocked logs the start of the episode just started at WARN, unless
// one was logged less than fullLogEvery ago: then it is counted into the
// next line logged (episodes_not_logged), and its end is not logged either.
// wmu is held.
func (s *Spool) logFullLocked(msg string, args ...any) {
	now := time.Now()
	if !s.fullLogAt.IsZero() && now.Sub(s.fullLogAt) < fullLogEvery {
		s.fullQuiet++
		return
	}
	if s.fullQuiet > 0 {
		args = append(args, "episodes_not_logged", s.fullQuiet)
	}
	s.log.Warn(msg, args...)
	s.fullLogAt, s.fullQuiet, s.full.logged = now, 0, true
}

// writeWorkedLocked records a successful write: the disk took it, so an
// ENOSPC needs no more evidence. wmu is held.
func (s *Spool) writeWorkedLocked() {
	s.full.noSpace = false
	s.writesWorkLocked()
}

// checkRoomAgain ends a full episode when an entry of the size that met it
// would be accepted now (see above). The maintainer calls it every round.
func (s *Spool) checkRoomAgain() {
	if !s.fullOn.Load() {
		return
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if !s.full.on || s.closed {
		return
	}
	// A blocked append ends it when it is accepted, a failing writer when
	// a write succeeds: they know better.
	if s.st.blocked.Load() > 0 || (s.wb && s.wfailing.Load()) || !s.roomLocked(s.full.need) {
		return
	}
	if s.full.noSpace && s.deletions.Load() == s.full.deletes && !s.diskShowsRoomLocked(s.full.need) {
		return
	}
	s.endFullLocked("free space check")
}

// diskShowsRoomLocked reports whether statfs shows room for a frame of need
// bytes above the free-disk floor, or above stageMax without one. wmu is
// held.
func (s *Spool) diskShowsRoomLocked(need int64) bool {
	free, _, err := s.fs.DiskSpace(s.dir)
	return err == nil && free-s.staged.Load()-need-sealFrameSize >= max(s.minFree, stageMax)
}

// A drop episode (when_full: drop_newest or drop_oldest) starts with the
// first entry dropped (refused, or deleted unacknowledged) and is logged
// by the drop lines, at most one per lossLogEvery ("spool: full, dropping
// entries", ERROR, with the counts since the last line). Those lines said
// nothing when the drops stopped: the log showed a spool dropping data
// long after it had room again. The maintainer now ends the episode once
// no entry was dropped for lossLogEvery (a spool that drops a segment every
// few seconds stays in one episode) and an entry of the size that met the
// full spool would be accepted (no full episode or refused write left
// either), and logs its end once at INFO ("spool: room again, drops
// stopped") with the entries dropped in it. As for full episodes, the end
// of an episode none of whose drops was logged (the lines' interval) is
// not logged either: its counts go to the next drop line.

// dropEpisode is the state of a drop episode. Guarded by lossLog.mu.
type dropEpisode struct {
	on              bool
	logged          bool      // a drop line was logged during it: so is its end
	need            int64     // the frame size of the newest entry that met the full spool
	started, latest time.Time // its first and newest drop
	oldest, newest  uint64    // entries dropped in it, by kind
}

// drop records a drop at now.
func (e *dropEpisode) drop(oldest, newest uint64, need int64, now time.Time) {
	if !e.on {
		*e = dropEpisode{on: true, started: now}
	}
	e.need, e.latest = need, now
	e.oldest += oldest
	e.newest += newest
}

// checkDropsStopped ends a drop episode when drops stopped and there is
// room again (see above). The maintainer calls it every round.
func (s *Spool) checkDropsStopped() {
	l := &s.lg
	l.mu.Lock()
	quiet := !l.ep.on || time.Since(l.ep.latest) < l.every
	l.mu.Unlock()
	if quiet { // nothing to end: no need to hold up appends for it
		return
	}
	s.wmu.Lock() // drops happen under wmu: none comes between the look and the end
	defer s.wmu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.ep
	if !e.on || s.closed || time.Since(e.latest) < l.every {
		return
	}
	if s.full.on || s.refErr != nil || (s.wb && s.wfailing.Load()) || !s.roomLocked(e.need) {
		return
	}
	l.ep = dropEpisode{}
	if !e.logged {
		return
	}
	// Counted in the line below: the next drop line starts afresh.
	l.oldest, l.newer = 0, 0
	s.log.Info("spool: room again, drops stopped", "dropped_oldest", e.oldest, "dropped_newest", e.newest,
		"dropping_for", e.latest.Sub(e.started).Round(time.Second))
}

// probeName is the empty file probeRefused creates and removes in the
// spool's directory (recovery removes one a crash left behind).
const probeName = "write-probe" + tmpSuffix

// probeRefused looks whether a directory that refused a write (refused.go)
// accepts writes again, when nothing else would find out: the refusal ended
// only with a successful write, so with no append coming (the agent's
// direct path takes the traffic, or a drop policy's appends came and went)
// "accepts writes again" was never logged. Once the refusal's backoff has
// passed, with no appender waiting to try again and no write-behind writer
// retrying, it creates and removes an empty file: at the backoff's pace
// (at most every refusedMaxBackoff while it is refused). The maintainer
// calls it every round.
func (s *Spool) probeRefused() {
	s.wmu.Lock()
	if s.closed || s.refErr == nil || s.refusingLocked() || s.st.blocked.Load() > 0 || (s.wb && s.wfailing.Load()) {
		s.wmu.Unlock()
		return
	}
	s.wmu.Unlock()
	err := s.probeWrite()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed || s.refErr == nil { // a write ended it meanwhile
		return
	}
	switch {
	case err == nil:
		s.writesWorkLocked()
	case isRefused(err):
		s.refusedLocked(err)
	}
	// Anything else (ENOSPC: no inode left) says nothing about the
	// refusal: the next write tells.
}

// probeWrite creates and removes probeName.
func (s *Spool) probeWrite() error {
	name := filepath.Join(s.dir, probeName)
	f, err := s.fs.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = f.Close()
	if rerr := s.fs.Remove(name); rerr != nil {
		return rerr
	}
	return err
}
