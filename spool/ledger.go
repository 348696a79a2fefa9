package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"
)

// Ack files: one per segment that has acknowledgements, named like the
// segment with ".ack". A header, then fixed-size records, each a checksummed
// range of acknowledged IDs. Fixed-size records make recovery simple: a torn
// record can only be the last one, and a corrupt one is skipped without
// losing the ones after it. See doc.go for the layout.
const (
	ackHeaderSize = 16
	ackRecordSize = 16
	ackVersion    = 1
	// ackCompactMin and ackCompactRatio decide when an ack file is rewritten
	// from the in-memory bitmap: when it has more than ackCompactMin records
	// and ackCompactRatio times the ranges the bitmap needs. Out-of-order
	// acks written one flush at a time are the usual cause.
	ackCompactMin   = 1024
	ackCompactRatio = 4
)

var ackMagic = [4]byte{'K', 'S', 'P', 'A'}

// idRange is the IDs [first, first+n).
type idRange struct {
	first ID
	n     uint32
}

// addID extends rs with id, merging with the last range when contiguous.
func addID(rs []idRange, id ID) []idRange {
	if k := len(rs); k > 0 {
		r := &rs[k-1]
		if r.first+ID(r.n) == id && r.n < math.MaxUint32 {
			r.n++
			return rs
		}
	}
	return append(rs, idRange{first: id, n: 1})
}

func encodeAckHeader(first ID) [ackHeaderSize]byte {
	var b [ackHeaderSize]byte
	copy(b[0:4], ackMagic[:])
	b[4] = ackVersion
	binary.LittleEndian.PutUint64(b[8:16], uint64(first))
	return b
}

func ackHeaderOK(b []byte, first ID) bool {
	return len(b) >= ackHeaderSize && [4]byte(b[0:4]) == ackMagic && b[4] == ackVersion &&
		ID(binary.LittleEndian.Uint64(b[8:16])) == first
}

func appendAckRecord(b []byte, r idRange) []byte {
	var rec [ackRecordSize]byte
	binary.LittleEndian.PutUint32(rec[4:8], r.n)
	binary.LittleEndian.PutUint64(rec[8:16], uint64(r.first))
	binary.LittleEndian.PutUint32(rec[0:4], crc32.Checksum(rec[4:], castagnoli))
	return append(b, rec[:]...)
}

func parseAckRecord(b []byte) (idRange, bool) {
	if binary.LittleEndian.Uint32(b[0:4]) != crc32.Checksum(b[4:ackRecordSize], castagnoli) {
		return idRange{}, false
	}
	r := idRange{first: ID(binary.LittleEndian.Uint64(b[8:16])), n: binary.LittleEndian.Uint32(b[4:8])}
	if r.first == 0 || r.n == 0 || uint64(r.first)+uint64(r.n) < uint64(r.first) {
		return idRange{}, false
	}
	return r, true
}

// bitmap records which entries of a segment are done: acknowledged, dropped
// or lost to corruption. It is allocated on the first set and grows with the
// highest index set, so a segment nobody acknowledged costs nothing.
type bitmap struct {
	words []uint64
	n     int64 // bits set
}

// set sets bit i and reports whether it was clear.
func (b *bitmap) set(i uint64) bool {
	w := i / 64
	if w >= uint64(len(b.words)) {
		grown := make([]uint64, w+1, max(w+1, uint64(2*len(b.words))))
		copy(grown, b.words)
		b.words = grown
	}
	m := uint64(1) << (i % 64)
	if b.words[w]&m != 0 {
		return false
	}
	b.words[w] |= m
	b.n++
	return true
}

func (b *bitmap) get(i uint64) bool {
	w := i / 64
	return w < uint64(len(b.words)) && b.words[w]&(1<<(i%64)) != 0
}

// ranges calls fn for each run of set bits, as IDs from base.
func (b *bitmap) ranges(base ID, fn func(idRange)) {
	var cur idRange
	flush := func() {
		if cur.n > 0 {
			fn(cur)
			cur = idRange{}
		}
	}
	for w, word := range b.words {
		for word != 0 {
			t := uint64(bits.TrailingZeros64(word))
			id := base + ID(uint64(w)*64+t)
			if cur.n > 0 && cur.first+ID(cur.n) == id && cur.n < math.MaxUint32 {
				cur.n++
			} else {
				flush()
				cur = idRange{first: id, n: 1}
			}
			word &= word - 1
		}
	}
	flush()
}

// countRanges is the number of records ranges would write.
func (b *bitmap) countRanges() int64 {
	var n int64
	b.ranges(0, func(idRange) { n++ })
	return n
}

func (s *Spool) ackPath(g *segment) string { return filepath.Join(s.dir, ackName(g.hdr.first)) }

// flushAcks appends the pending acknowledgements of every segment to its ack
// file and syncs it (unless sync is never). After an error the next try
// rewrites the file from the segment's bitmap; until then the entries are
// at worst delivered again after a crash.
func (s *Spool) flushAcks() error {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	type job struct {
		g       *segment
		rs      []idRange
		rewrite bool
	}
	var jobs []job
	s.mu.Lock()
	for _, g := range s.segs {
		switch {
		case g.rewrite:
			jobs = append(jobs, job{g: g, rewrite: true})
			g.rewrite, g.pending = false, nil
		case len(g.pending) > 0:
			jobs = append(jobs, job{g: g, rs: g.pending})
			g.pending = nil
		}
	}
	s.mu.Unlock()
	var errs []error
	created := false
	var buf []byte
	for _, j := range jobs {
		if j.rewrite {
			if err := s.rewriteAcks(j.g); err != nil {
				s.mu.Lock()
				removed := j.g.removed
				if !removed {
					j.g.rewrite, j.g.pending = true, nil
				}
				s.mu.Unlock()
				if removed { // deleted meanwhile: nothing to write any more
					s.ackWritten(j.g) // a file renamed into place before the deletion
				} else {
					errs = append(errs, err)
				}
			}
			continue
		}
		buf = buf[:0]
		for _, r := range j.rs {
			buf = appendAckRecord(buf, r)
		}
		s.mu.Lock()
		prev := j.g.ackSize
		s.mu.Unlock()
		fresh := prev == 0
		err := s.appendAckFile(j.g, buf, prev)
		if err != nil {
			// The bitmap holds these acks and every later one: the next
			// flush rewrites the file from it, so nothing queues up while
			// the disk refuses.
			s.mu.Lock()
			removed := j.g.removed
			if !removed {
				j.g.rewrite, j.g.pending = true, nil
			}
			s.mu.Unlock()
			if removed {
				s.ackWritten(j.g) // a file created before the deletion
			} else {
				errs = append(errs, err)
			}
			continue
		}
		grow := int64(len(buf))
		if fresh {
			grow += ackHeaderSize
		}
		if !s.ackWritten(j.g, func() { j.g.ackSize += grow }) {
			continue
		}
		created = created || fresh
		s.mu.Lock()
		j.g.ackRecs += int64(len(j.rs))
		compact := j.g.ackRecs > ackCompactMin && j.g.ackRecs > ackCompactRatio*j.g.done.countRanges()
		s.mu.Unlock()
		s.st.bytes.Add(grow)
		if compact {
			if err := s.rewriteAcks(j.g); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if created && s.cfg.Sync != SyncNever {
		if err := s.fs.SyncDir(s.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ackWritten is called by an ack write (ackMu held) once its file is
// written, and applies account to g under mu. Segments are deleted without
// ackMu (an appender dropping the oldest one, the maintainer deleting
// finished ones: neither waits for an ack file's fsync), so g may have
// been taken out of the table meanwhile: then its deleter has counted its
// bytes and removed its files (or is about to), and the file this write
// created or renamed into place is removed here, account is not applied,
// and ackWritten reports false.
func (s *Spool) ackWritten(g *segment, account ...func()) bool {
	s.mu.Lock()
	removed := g.removed
	if !removed {
		for _, fn := range account {
			fn()
		}
	}
	s.mu.Unlock()
	if removed {
		if err := s.fs.Remove(s.ackPath(g)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("spool: cannot delete the ack file of a deleted segment; the next start removes it", "segment", g.path, "error", err)
		}
	}
	return !removed
}

// appendAckFile appends records to g's ack file, which has prev bytes,
// creating it with its header when prev is 0. A failed write is cut off
// again, so that records stay aligned. ackMu is held.
func (s *Spool) appendAckFile(g *segment, recs []byte, prev int64) error {
	flags := os.O_WRONLY | os.O_APPEND
	if prev == 0 {
		flags |= os.O_CREATE | os.O_TRUNC
		h := encodeAckHeader(g.hdr.first)
		recs = append(h[:], recs...)
	}
	f, err := s.fs.OpenFile(s.ackPath(g), flags, 0o600)
	if err != nil {
		return fmt.Errorf("spool: open ack file: %w", err)
	}
	n, err := f.Write(recs)
	if err != nil && n > 0 {
		_ = f.Truncate(prev)
	}
	if err == nil && s.cfg.Sync != SyncNever {
		err = f.Sync()
		s.st.fsyncs.Add(1)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spool: write ack file: %w", err)
	}
	return nil
}

// rewriteAcks replaces g's ack file with one record per run of done entries
// (temporary file, sync, rename, sync the directory). ackMu is held.
func (s *Spool) rewriteAcks(g *segment) error {
	h := encodeAckHeader(g.hdr.first)
	buf := h[:]
	var recs int64
	s.mu.Lock()
	g.done.ranges(g.hdr.first, func(r idRange) {
		buf = appendAckRecord(buf, r)
		recs++
	})
	s.mu.Unlock()
	path := s.ackPath(g)
	tmp := path + ".tmp"
	f, err := s.fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("spool: compact ack file: %w", err)
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
		s.st.fsyncs.Add(1)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.fs.Rename(tmp, path)
	}
	if err == nil {
		err = s.fs.SyncDir(s.dir)
	}
	if err != nil {
		_ = s.fs.Remove(tmp)
		return fmt.Errorf("spool: compact ack file: %w", err)
	}
	var delta int64
	if s.ackWritten(g, func() {
		delta = int64(len(buf)) - g.ackSize
		g.ackSize, g.ackRecs = int64(len(buf)), recs
	}) {
		s.st.bytes.Add(delta)
	}
	return nil
}

// recoverAcks applies g's ack file to its bitmap at Open and returns the
// highest ID it names (acks may name entries whose frames were lost in a
// torn tail; new IDs must not reuse them). A damaged file costs at most
// duplicates: unreadable records are skipped, a torn last record is cut, and
// a file with a bad header is removed. buf is scratch space of at least
// ackRecordSize bytes.
func (s *Spool) recoverAcks(g *segment, buf []byte) (ID, error) {
	path := s.ackPath(g)
	f, err := s.fs.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("spool: open ack file %s: %w", path, err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return 0, fmt.Errorf("spool: stat ack file %s: %w", path, err)
	}
	hdr := make([]byte, ackHeaderSize)
	n, err := f.ReadAt(hdr, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("spool: read ack file %s: %w", path, err)
	}
	if n < ackHeaderSize || !ackHeaderOK(hdr, g.hdr.first) {
		if size > 0 {
			s.log.Warn("spool: unreadable ack file removed; its entries will be delivered again", "file", path)
		}
		f.Close()
		if err := s.fs.Remove(path); err != nil {
			return 0, fmt.Errorf("spool: remove ack file: %w", err)
		}
		return 0, nil
	}
	var maxID ID
	var recs, bad int64
	whole := ackHeaderSize + (size-ackHeaderSize)/ackRecordSize*ackRecordSize
	buf = buf[:len(buf)/ackRecordSize*ackRecordSize] // the recovery's read buffer
	for off := int64(ackHeaderSize); off < whole; {
		n := min(int64(len(buf)), whole-off)
		if _, err := f.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("spool: read ack file %s: %w", path, err)
		}
		for p := int64(0); p < n; p += ackRecordSize {
			r, ok := parseAckRecord(buf[p : p+ackRecordSize])
			if !ok {
				bad++
				continue
			}
			recs++
			maxID = max(maxID, r.first+ID(r.n)-1)
			lo, hi := max(r.first, g.hdr.first), min(r.first+ID(r.n)-1, g.last)
			for id := lo; id <= hi && hi >= lo; id++ {
				g.done.set(uint64(id - g.hdr.first))
			}
		}
		off += n
	}
	if whole < size {
		if err := f.Truncate(whole); err != nil {
			return 0, fmt.Errorf("spool: truncate ack file %s: %w", path, err)
		}
	}
	if bad > 0 {
		s.log.Warn("spool: unreadable records in an ack file skipped; those entries may be delivered again",
			"file", path, "records", bad)
	}
	g.ackSize, g.ackRecs = whole, recs+bad
	if g.ackRecs > ackCompactMin && g.ackRecs > ackCompactRatio*g.done.countRanges() {
		if err := s.rewriteAcks(g); err != nil {
			s.log.Warn("spool: cannot compact an ack file", "file", path, "error", err)
		}
	}
	return maxID, nil
}
