package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// maxCorruptFiles is how many *.corrupt files Open keeps for inspection; it
// deletes older ones so that they never need deleting by hand.
const maxCorruptFiles = 16

// recover rebuilds the spool's state from the directory. It runs in Open,
// before any goroutine starts.
func (s *Spool) recover() error {
	start := time.Now()
	des, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spool: read directory: %w", err)
	}
	var segFirsts []ID
	ackFiles := map[ID]bool{}
	names := map[string]bool{}
	var corrupt []os.DirEntry
	for _, de := range des {
		name := de.Name()
		names[name] = true
		if first, ok := parseName(name, ".seg"); ok && de.Type().IsRegular() {
			segFirsts = append(segFirsts, first)
			continue
		}
		if first, ok := parseName(name, ".ack"); ok && de.Type().IsRegular() {
			ackFiles[first] = true
			continue
		}
		switch {
		case name == lockName:
		case strings.HasSuffix(name, ".corrupt"):
			corrupt = append(corrupt, de)
		case strings.HasSuffix(name, ".ack.tmp"), // an interrupted ack-file rewrite
			strings.HasSuffix(name, ".seg"+tmpSuffix), // an interrupted repair (repairActiveLocked)
			name == probeName:                         // a write probe (probeRefused)
			_ = s.fs.Remove(filepath.Join(s.dir, name))
		default:
			s.log.Debug("spool: ignoring a file it does not own", "file", name)
		}
	}
	sort.Slice(segFirsts, func(i, j int) bool { return segFirsts[i] < segFirsts[j] })

	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	rs := &recoverState{s: s, names: names, buf: *bp, unsynced: map[*segment]bool{}}
	var kept []*segment
	var maxUsed ID // the highest ID that may have been handed out
	for i, first := range segFirsts {
		var next ID
		if i+1 < len(segFirsts) {
			next = segFirsts[i+1]
		}
		g, used, err := rs.segment(first, next, i == len(segFirsts)-1)
		if err != nil {
			return err
		}
		maxUsed = max(maxUsed, used)
		if g == nil {
			if ackFiles[first] {
				_ = s.fs.Remove(filepath.Join(s.dir, ackName(first)))
				delete(ackFiles, first)
			}
			continue
		}
		if ackFiles[first] {
			used, err := s.recoverAcks(g, rs.buf)
			if err != nil {
				return err
			}
			maxUsed = max(maxUsed, used)
			delete(ackFiles, first)
		}
		kept = append(kept, g)
	}
	if err := rs.syncSealed(kept); err != nil {
		return err
	}
	for first := range ackFiles { // their segment is gone: finished or moved aside
		_ = s.fs.Remove(filepath.Join(s.dir, ackName(first)))
	}
	s.pruneCorrupt(corrupt)

	// Segment ranges must not overlap; the earlier one yields.
	for i := 0; i+1 < len(kept); i++ {
		if a, b := kept[i], kept[i+1]; a.last >= b.hdr.first {
			s.log.Warn("spool: segments overlap; ignoring the end of the older one",
				"segment", a.path, "last_id", uint64(a.last), "next_first_id", uint64(b.hdr.first))
			a.last = b.hdr.first - 1
		}
	}

	nextID := maxUsed + 1
	// An empty last segment (the active one at the last stop, or a crash
	// right after a roll) becomes the active segment again if its name does
	// not go back in IDs; it is also what carries the ID sequence across a
	// restart of an empty spool. Otherwise it goes, but only once the new
	// active segment exists (its ack file may be what names the highest ID).
	var stale *segment
	if n := len(kept); n > 0 && kept[n-1].count() == 0 {
		g := kept[n-1]
		kept = kept[:n-1]
		if g.hdr.first >= nextID {
			f, err := s.fs.OpenFile(g.path, os.O_RDWR|os.O_APPEND, 0)
			if err != nil {
				return fmt.Errorf("spool: open segment %s: %w", g.path, err)
			}
			if g.sealed {
				// Sealed and empty (the format allows it; this version
				// seals no empty segment): the seal comes off. A new
				// segment for the next ID would have its name.
				if err := f.Truncate(segHeaderSize); err != nil {
					f.Close()
					return fmt.Errorf("spool: truncate segment %s: %w", g.path, err)
				}
				g.sealed, g.end, g.size = false, segHeaderSize, segHeaderSize
			}
			nextID = g.hdr.first
			s.active, s.wf = g, f
			// Torn bytes that could not be cut are after its header: the
			// first write repairs it (repairActiveLocked) or fails.
			s.broken = g == rs.torn
		} else {
			stale = g
			nextID = max(nextID, g.hdr.first)
		}
	}
	// A copy: removeLocked shifts s.segs in place, and the loop over kept
	// below must not see the active segment (appended to s.segs) slide into
	// its range, or it would delete that empty segment as "finished" and
	// every entry appended after this Open would go to an unlinked file.
	s.segs = slices.Clone(kept)
	var entries int64
	for _, g := range kept {
		g.sealed = true
		entries += g.count() - g.done.n
		s.st.bytes.Add(g.size + g.ackSize)
	}
	if s.active != nil {
		s.segs = append(s.segs, s.active)
		s.st.bytes.Add(s.active.size + s.active.ackSize)
	}
	s.st.segments.Store(int64(len(s.segs)))
	s.st.entries.Store(entries)
	s.nextID, s.wnext = nextID, nextID
	s.lastID.Store(uint64(nextID - 1))
	s.durable.Store(uint64(nextID - 1))
	s.synced.Store(uint64(nextID - 1))
	if err := s.measureFree(); err != nil {
		s.log.Warn("spool: cannot measure free disk space; min_free_bytes is not enforced", "error", err)
	}
	if s.active == nil {
		g, f, err := s.createSegment(nextID)
		switch {
		case err == nil:
			s.active, s.wf = g, f
		case isRefused(err):
			// A directory that refuses writes (chmod a-w, an LSM): the
			// spool opens without a segment to write to, so the agent
			// starts and delivers what is on disk. Appends meet when_full
			// and the first write after the backoff tries again to start
			// a segment, as after a failed roll (refused.go).
			s.refusedLocked(err)
			s.log.Warn("spool: the directory refuses writes: opened to deliver the entries on disk; appends follow when_full until it accepts writes",
				"dir", s.dir, "error", err, "when_full", s.cfg.WhenFull, "entries", entries)
		default:
			return fmt.Errorf("spool: %w", err)
		}
	}
	// Finished segments go only now that a newer segment holds the IDs.
	if stale != nil {
		s.removeRecovered(stale)
	}
	for _, g := range kept {
		if g.allDone() {
			s.removeLocked(g)
			if s.removeFilesLocked(g) != nil {
				s.toDelete = append(s.toDelete, g) // the maintainer tries again
			}
		}
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		return fmt.Errorf("spool: sync directory: %w", err)
	}
	s.log.Info("spool: opened", "dir", s.dir, "segments", s.st.segments.Load(), "entries", s.st.entries.Load(),
		"bytes", s.st.bytes.Load(), "min_free_bytes", s.minFree, "next_id", uint64(nextID), "torn_tails", s.st.tornTails.Load(),
		"corrupt_segments", s.st.corruptSegments.Load(), "corrupt_entries", s.st.corruptEntries.Load(),
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// parseName parses "<16 lower-case hex digits><ext>", the names segName and
// ackName make. Any other name (upper-case hex included) is not the spool's:
// the spool opens files by the name it makes.
func parseName(name, ext string) (ID, bool) {
	hex, ok := strings.CutSuffix(name, ext)
	if !ok || len(hex) != 16 {
		return 0, false
	}
	v, err := strconv.ParseUint(hex, 16, 64)
	if err != nil || v == 0 || fmt.Sprintf("%016x", v) != hex {
		return 0, false
	}
	return ID(v), true
}

type recoverState struct {
	s        *Spool
	names    map[string]bool // files in the directory, for moving aside
	buf      []byte
	unsynced map[*segment]bool // trusted by their seal, not fsynced by this Open
	// torn is the last segment, empty, whose torn end could not be cut
	// (cutLeft): if it becomes the active segment, it is repaired before
	// the first frame is written to it (the spool's broken flag).
	torn *segment
}

// syncSealed fsyncs the segments trusted by their seal. A sealed
// segment is fsynced by the syncer after a newer one was created, so a
// process stopped between the two (kill -9) leaves sealed segments perhaps
// only in the page cache, and Durable, set from what Open found, must not
// cover them before they are on disk. (An fsync of a file already written
// back costs little.)
func (rs *recoverState) syncSealed(kept []*segment) error {
	s := rs.s
	for _, g := range kept {
		if g.count() == 0 || !rs.unsynced[g] {
			continue
		}
		f, err := s.fs.OpenFile(g.path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("spool: open segment %s: %w", g.path, err)
		}
		err = f.Sync()
		s.st.fsyncs.Add(1)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("spool: sync segment %s: %w", g.path, err)
		}
	}
	return nil
}

// segment recovers one segment file. It returns the segment to keep (sealed
// unless empty), or nil if the file was removed or moved aside, and the
// highest ID the file may have held. Only errors that are not about the
// file's content (I/O errors, a read error included) are returned.
func (rs *recoverState) segment(first, next ID, isLast bool) (*segment, ID, error) {
	s := rs.s
	path := filepath.Join(s.dir, segName(first))
	f, err := s.fs.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("spool: open segment %s: %w", path, err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, 0, fmt.Errorf("spool: stat segment %s: %w", path, err)
	}
	if size == 0 { // created, then the process died: nothing was in it
		if err := s.fs.Remove(path); err != nil {
			return nil, 0, fmt.Errorf("spool: remove empty segment: %w", err)
		}
		return nil, first - 1, nil
	}
	// A read error fails Open rather than move a healthy segment aside (and
	// hand its IDs out again) because of a transient EIO.
	hb := make([]byte, min(size, segHeaderSize))
	_, err = f.ReadAt(hb, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("spool: read segment %s: %w", path, err)
	}
	h, err := parseSegHeader(hb)
	if err == nil && h.first != first {
		err = &headerError{fmt.Sprintf("first ID %d does not match the file name", h.first)}
	}
	if err != nil {
		// Frames are unreadable without the header's salt; an upper bound
		// on the IDs the file held keeps new IDs from reusing them.
		upper := first + ID(max(size-segHeaderSize, 0)/frameHeaderSize)
		return nil, upper, rs.moveAside(path, first, next, size, err.Error())
	}

	fr := newFrameReader(f, h.salt, maxEntryLimit, rs.buf)
	if size >= segHeaderSize+sealFrameSize {
		b := make([]byte, sealFrameSize)
		_, err := f.ReadAt(b, size-sealFrameSize)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, fmt.Errorf("spool: read segment %s: %w", path, err)
		}
		if err == nil {
			if last, ok := parseSeal(b, h, size-sealFrameSize); ok &&
				uint64(last-first+1) <= uint64(size-segHeaderSize-sealFrameSize)/frameHeaderSize {
				g := &segment{hdr: h, path: path, last: last, end: size - sealFrameSize, size: size, sealed: true}
				rs.unsynced[g] = true
				return g, last, nil
			}
		}
	}

	// No valid seal: the process stopped while this segment was active.
	res, err := scanFrames(fr, first, size)
	if err != nil {
		return nil, 0, fmt.Errorf("spool: read segment %s: %w", path, err)
	}
	g := &segment{hdr: h, path: path, last: res.last, end: res.end, size: res.end}
	if tail := size - res.end; tail > 0 {
		// A torn tail is one entry cut short at the end of the last
		// segment; or of an earlier one whose torn end could not be cut
		// at the previous Open (how=left): new segments followed it, the
		// first holding the ID the torn entry had (nothing is missing).
		torn := isLast || (next == res.last+1 && tornEntry(f, res.end, size, next))
		how := rs.cutTail(f, g, res.frames > 0)
		s.st.bytesLost.Add(uint64(tail))
		args := []any{"segment", path, "kept_up_to_id", uint64(res.last), "bytes_cut", tail}
		if how != cutTruncated {
			args = append(args, "how", how)
		}
		if torn {
			// An append that was cut short: it never returned, so nothing
			// acknowledged to a caller is lost (with sync: always).
			s.st.tornTails.Add(1)
			s.log.Warn("spool: cut a torn tail (an interrupted append)", args...)
		} else {
			var lost ID
			if next > res.last+1 {
				lost = next - 1 - res.last
			}
			s.st.corruptEntries.Add(uint64(lost))
			// Corruption, or a power loss before the syncer fsynced this
			// sealed segment (entries that were not durable yet).
			s.log.Error("spool: cut a corrupt or unsynced end off a segment",
				append(args, "entries_lost", uint64(lost))...)
		}
		switch how {
		case cutReplaced:
			// A clean copy, sealed (when it holds entries) and fsynced,
			// is in place of the file f has open.
			if res.frames == 0 && !isLast {
				rs.removeEmpty(path)
				return nil, first - 1, nil
			}
			g.sealed = res.frames > 0
			if g.sealed {
				return g, res.last, nil
			}
			return g, first - 1, nil
		case cutLeft:
			// The torn bytes stay on disk: reads stop at the last whole
			// entry, nothing is ever appended to this file, and the next
			// Open scans it again.
			if res.frames == 0 {
				if isLast {
					rs.torn = g // the repair is tried again before the first write
					return g, first - 1, nil
				}
				rs.removeEmpty(path)
				return nil, first - 1, nil
			}
			g.size = size
			s.st.fsyncs.Add(1)
			if err := f.Sync(); err != nil {
				return nil, 0, fmt.Errorf("spool: sync recovered segment %s: %w", path, err)
			}
			g.sealed = true
			return g, res.last, nil
		}
	}
	if res.frames == 0 {
		if isLast {
			return g, first - 1, nil // empty: may become the active segment again
		}
		if err := s.fs.Remove(path); err != nil {
			return nil, 0, fmt.Errorf("spool: remove empty segment: %w", err)
		}
		return nil, first - 1, nil
	}
	// Seal it: it is never appended to again, and the next Open need not
	// scan it. If that fails (a full disk) it is scanned again next time.
	// Either way sync it: after a kill -9 its tail may be only in the page
	// cache, and Durable covers what Open recovered. A failed sync fails
	// Open: the kernel may have dropped what it could not write.
	seal := appendSeal(nil, h, res.last, res.end)
	if _, err := f.WriteAt(seal, res.end); err == nil {
		g.size += sealFrameSize
	} else {
		_ = f.Truncate(res.end)
	}
	s.st.fsyncs.Add(1)
	if err := f.Sync(); err != nil {
		return nil, 0, fmt.Errorf("spool: sync recovered segment %s: %w", path, err)
	}
	g.sealed = true
	return g, res.last, nil
}

// tornEntry reports whether the bytes of f from off to size are one
// frame cut short by the end of the file (nothing after it): a header cut
// short, or a header for entry id whose payload would end past size.
func tornEntry(f file, off, size int64, id ID) bool {
	n := size - off
	if n <= 0 {
		return false
	}
	if n < frameHeaderSize {
		return true
	}
	var h [frameHeaderSize]byte
	if _, err := f.ReadAt(h[:], off); err != nil {
		return false
	}
	plen := int64(binary.LittleEndian.Uint32(h[4:8]))
	return ID(binary.LittleEndian.Uint64(h[8:16])) == id && plen <= maxEntryLimit && off+frameHeaderSize+plen > size
}

// How cutTail took a torn or corrupt end off a segment file.
const (
	cutTruncated = "truncated" // the file was cut at the last whole frame
	cutReplaced  = "replaced"  // a clean copy of its whole frames replaced it
	cutLeft      = "left"      // neither worked: the bytes stay, reads stop before them
)

// cutTail takes the bytes after g.end off the segment file f has open, at
// g.path: by truncating it, or, when the file system refuses that (EPERM,
// EIO), as the spool repairs a broken segment while it runs
// (repairActiveLocked): a clean copy of the header and every whole frame,
// sealed when sealIt, is written beside it (*.seg.tmp), fsynced and renamed
// over it, and the directory is fsynced. A crash at any point leaves the old
// file or the copy, each holding every whole entry. If that fails too (a
// directory that refuses writes) the file is left as it is; the caller
// reads it only up to g.end and never appends to it. No error: an Open
// that cannot cut a tail still serves what is before it.
func (rs *recoverState) cutTail(f file, g *segment, sealIt bool) string {
	s := rs.s
	terr := f.Truncate(g.end)
	if terr == nil {
		return cutTruncated
	}
	err := rs.replaceWithPrefix(f, g, sealIt)
	if err == nil {
		return cutReplaced
	}
	s.log.Warn("spool: cannot cut the torn end off a segment; reading it up to its last whole entry, and trying again at the next start",
		"segment", g.path, "truncate_error", terr, "replace_error", err)
	return cutLeft
}

// replaceWithPrefix writes the header and the frames before g.end of the
// file f to g.path+".tmp", seals it when sealIt, fsyncs it, renames it over
// g.path and fsyncs the directory; on success g.size is the new file's size.
func (rs *recoverState) replaceWithPrefix(f file, g *segment, sealIt bool) error {
	s := rs.s
	tmp := g.path + tmpSuffix
	out, err := s.fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		out.Close()
		_ = s.fs.Remove(tmp)
		return err
	}
	buf := rs.buf
	for off := int64(0); off < g.end; {
		n := min(int64(len(buf)), g.end-off)
		if _, err := f.ReadAt(buf[:n], off); err != nil && !(errors.Is(err, io.EOF) && n > 0) {
			return fail(err)
		}
		if _, err := out.Write(buf[:n]); err != nil {
			return fail(err)
		}
		off += n
	}
	size := g.end
	if sealIt {
		seal := appendSeal(nil, g.hdr, g.last, g.end)
		if _, err := out.Write(seal); err != nil {
			return fail(err)
		}
		size += int64(len(seal))
	}
	s.st.fsyncs.Add(1)
	if err := out.Sync(); err != nil {
		return fail(err)
	}
	if err := out.Close(); err != nil {
		_ = s.fs.Remove(tmp)
		return err
	}
	if err := s.fs.Rename(tmp, g.path); err != nil {
		_ = s.fs.Remove(tmp)
		return err
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		// The copy holds the same whole entries as the old file: a crash
		// that forgets the rename loses nothing either way.
		s.log.Warn("spool: cannot sync the directory after replacing a segment", "segment", g.path, "error", err)
	}
	g.size = size
	return nil
}

// removeEmpty removes a segment file that holds no entry. A failure is
// logged, not returned: the file names no ID that a newer one does not,
// and the next Open tries again.
func (rs *recoverState) removeEmpty(path string) {
	if err := rs.s.fs.Remove(path); err != nil {
		rs.s.log.Warn("spool: cannot remove an empty segment; the next start tries again", "segment", path, "error", err)
	}
}

// moveAside renames an unreadable segment to *.corrupt, counts and logs it.
// Only a failed rename is an error.
func (rs *recoverState) moveAside(path string, first, next ID, size int64, reason string) error {
	s := rs.s
	to := path + ".corrupt"
	for n := 1; rs.names[filepath.Base(to)]; n++ {
		to = fmt.Sprintf("%s.%d.corrupt", path, n)
	}
	if err := s.fs.Rename(path, to); err != nil {
		return fmt.Errorf("spool: move unreadable segment aside: %w", err)
	}
	rs.names[filepath.Base(to)] = true
	s.st.corruptSegments.Add(1)
	s.st.bytesLost.Add(uint64(size))
	lost := "unknown (it was the newest segment)"
	if next > first {
		lost = "at most " + strconv.FormatUint(uint64(next-first), 10)
	}
	s.log.Error("spool: unreadable segment moved aside", "segment", path, "moved_to", to, "reason", reason,
		"bytes", size, "entries_lost", lost)
	return nil
}

// removeRecovered deletes a kept segment's files during recovery.
func (s *Spool) removeRecovered(g *segment) {
	_ = s.fs.Remove(g.path)
	if g.ackSize > 0 {
		_ = s.fs.Remove(filepath.Join(s.dir, ackName(g.hdr.first)))
	}
}

// pruneCorrupt keeps the newest maxCorruptFiles *.corrupt files.
func (s *Spool) pruneCorrupt(files []os.DirEntry) {
	if len(files) == 0 {
		return
	}
	type cf struct {
		name string
		mod  time.Time
		size int64
	}
	var cs []cf
	var total int64
	for _, de := range files {
		fi, err := de.Info()
		if err != nil {
			continue
		}
		cs = append(cs, cf{de.Name(), fi.ModTime(), fi.Size()})
		total += fi.Size()
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].mod.After(cs[j].mod) })
	for _, c := range cs[min(len(cs), maxCorruptFiles):] {
		if err := s.fs.Remove(filepath.Join(s.dir, c.name)); err == nil {
			s.log.Info("spool: deleted an old file moved aside earlier", "file", c.name, "bytes", c.size)
			total -= c.size
		}
	}
	s.log.Warn("spool: files moved aside after corruption are kept for inspection", "dir", s.dir,
		"files", min(len(cs), maxCorruptFiles), "bytes", total)
}
