package agent

import (
	"fmt"
	"time"

	"github.com/kplagent/agent/agent/source"
	"github.com/kplagent/agent/spool"
)

// tracker computes, per file, the offset a checkpoint may move to: the start
// of the earliest record that is not yet durable. A record is durable once
// the aggregate holding it is in the spool and the spool has synced past its
// ID (or it was dead-lettered, or dropped by a counted spool policy).
//
// Records of one file are emitted in order but may be spread over several
// open aggregates (one per predicted shard), which close in any order, so the
// offset is the minimum over the file's open and not-yet-durable aggregates,
// and the end of the last record seen when there are none. The tracker is not
// safe for concurrent use: the flow calls it under its lock.
type tracker struct {
	files  map[trackKey]*fileTrack
	groups [][]*fileTrack // per aggregate group: the files with records in it
	last   map[string]*fileTrack
}

type trackKey struct {
	source string
	fileID string
}

type fileTrack struct {
	key       trackKey
	committer source.Committer
	lastEnd   int64
	open      []openGroup // the file's records in open aggregates
	pending   []pendingAgg
	committed int64
	touched   time.Time
}

type openGroup struct {
	group    int
	minStart int64
}

type pendingAgg struct {
	id       spool.ID
	t        *ticket // set for an aggregate sent directly (id unused)
	minStart int64
}

func (p pendingAgg) durable(d spool.ID) bool {
	if p.t != nil {
		return p.t.durable(d)
	}
	return p.id <= d
}

func newTracker() *tracker {
	return &tracker{files: map[trackKey]*fileTrack{}, last: map[string]*fileTrack{}}
}

// add notes that a record at c from the named source joined group.
// group < 0 means the record needs no durability wait (dead-lettered).
func (t *tracker) add(src string, committer source.Committer, c source.Cursor, group int, now time.Time) {
	if committer == nil || c.FileID == "" {
		return
	}
	ft := t.last[src]
	if ft == nil || ft.key.fileID != c.FileID {
		k := trackKey{src, c.FileID}
		ft = t.files[k]
		if ft == nil {
			ft = &fileTrack{key: k, committer: committer, committed: -1}
			t.files[k] = ft
		}
		t.last[src] = ft
	}
	ft.touched = now
	if c.Offset > ft.lastEnd {
		ft.lastEnd = c.Offset
	}
	if group < 0 {
		return
	}
	for _, o := range ft.open {
		if o.group == group {
			return // an earlier record of this file already pins the group's start
		}
	}
	ft.open = append(ft.open, openGroup{group: group, minStart: c.Start})
	for len(t.groups) <= group {
		t.groups = append(t.groups, nil)
	}
	t.groups[group] = append(t.groups[group], ft)
}

// closed notes that group's aggregate went to the spool as id, or was sent
// directly under tk. ok false means the aggregate was not kept (a counted
// drop): its records no longer hold the checkpoint back.
func (t *tracker) closed(group int, id spool.ID, tk *ticket, ok bool) {
	if group < 0 || group >= len(t.groups) {
		return
	}
	for _, ft := range t.groups[group] {
		for i, o := range ft.open {
			if o.group != group {
				continue
			}
			if ok {
				ft.pending = append(ft.pending, pendingAgg{id: id, t: tk, minStart: o.minStart})
			}
			ft.open = append(ft.open[:i], ft.open[i+1:]...)
			break
		}
	}
	t.groups[group] = t.groups[group][:0]
}

// regroup prepares the per-group state for a new builder of n groups (a
// shard map change). Every aggregate of the old builder must have been
// closed first: a group index of the new builder names another aggregate
// than the same index of the old one, so a record still open in an old
// group would be released by the close of an unrelated new aggregate.
func (t *tracker) regroup(n int) error {
	for g, fts := range t.groups {
		if len(fts) > 0 {
			return fmt.Errorf("tracker: group %d of the old aggregator still has open records", g)
		}
	}
	for _, ft := range t.files {
		if len(ft.open) > 0 {
			return fmt.Errorf("tracker: file %s still has records in open aggregates", ft.key.fileID)
		}
	}
	if cap(t.groups) >= n {
		t.groups = t.groups[:n]
	} else {
		t.groups = make([][]*fileTrack, n)
	}
	return nil
}

// commit hands every file's durable offset to its source. durable is the
// spool's highest durable ID. Files idle for longer than forget with nothing
// in flight are forgotten.
func (t *tracker) commit(durable spool.ID, now time.Time, forget time.Duration) {
	for k, ft := range t.files {
		// Drop what became durable (direct sends finish in any order).
		keep := ft.pending[:0]
		for _, p := range ft.pending {
			if !p.durable(durable) {
				keep = append(keep, p)
			}
		}
		clear(ft.pending[len(keep):])
		ft.pending = keep
		off := ft.lastEnd
		for _, o := range ft.open {
			off = min(off, o.minStart)
		}
		for _, p := range ft.pending {
			off = min(off, p.minStart)
		}
		if off > ft.committed {
			ft.committed = off
			ft.committer.Commit(ft.key.fileID, off)
		}
		if len(ft.open) == 0 && len(ft.pending) == 0 && now.Sub(ft.touched) > forget {
			delete(t.files, k)
			if t.last[k.source] == ft {
				delete(t.last, k.source)
			}
		}
	}
}

// inFlight reports whether any tracked record is not yet durable.
func (t *tracker) inFlight() bool {
	for _, ft := range t.files {
		if len(ft.open) > 0 || len(ft.pending) > 0 {
			return true
		}
	}
	return false
}
