package file

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

// This file finds what logrotate left of a file while the source was
// stopped, beyond the plain rename (discover.go) and plain copy (copied.go)
// next to the file: rotations compressed already (compress without
// delaycompress), rotations in other directories (olddir: rotated_dirs),
// and versions of the file that were written and rotated away entirely
// while the source was stopped (two rotations or more).

// rotationDirs are the directories where the rotations of the file at
// fpath are looked for: its own, then Config.RotatedDirs (relative ones
// relative to its own, as logrotate's olddir).
func (r *runner) rotationDirs(fpath string) []string {
	dir := filepath.Dir(fpath)
	out := []string{dir}
	for _, d := range r.cfg.RotatedDirs {
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		if d = filepath.Clean(d); !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// decoders read the compressed rotations the source can read: gzip and
// bzip2 from the standard library, xz, zstd and lz4 (frame format) from
// maintained libraries (the agent already uses klauspost/compress and
// pierrec/lz4). Other suffixes (.lzma, .lzo, .Z, .zip, .br, .7z) are known
// as compressed (compressedExts) and never read.
var decoders = map[string]func(io.Reader) (io.ReadCloser, error){
	".gz": func(r io.Reader) (io.ReadCloser, error) { return gzip.NewReader(r) }, // every member of a multi-member file
	".bz2": func(r io.Reader) (io.ReadCloser, error) {
		return io.NopCloser(bzip2.NewReader(r)), nil
	},
	".xz": func(r io.Reader) (io.ReadCloser, error) {
		x, err := xz.NewReader(r)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(x), nil
	},
	".zst":  newZstd,
	".zstd": newZstd,
	".lz4": func(r io.Reader) (io.ReadCloser, error) {
		return io.NopCloser(lz4.NewReader(r)), nil
	},
}

// zstdMaxWindow bounds the memory a zstd rotation may take to decode: zstd
// --long=27 (128 MiB) at most; the default levels use 8 MiB or less.
const zstdMaxWindow = 128 << 20

func newZstd(r io.Reader) (io.ReadCloser, error) {
	d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(zstdMaxWindow))
	if err != nil {
		return nil, err
	}
	return d.IOReadCloser(), nil
}

// Kinds of rotation names (rotAge).
const (
	ageUnknown = iota
	ageCount   // app.log.1: the smaller, the newer
	ageStamp   // app.log-20261206 (dateext): the greater, the newer
)

// rotAge is what a rotation's name tells of its age.
type rotAge struct {
	kind int
	n    int
	s    string
}

// newerThan reports whether a names a later rotation than b. Names of
// different kinds (or unknown) are not compared: false.
func (a rotAge) newerThan(b rotAge) bool {
	switch {
	case a.kind != b.kind:
		return false
	case a.kind == ageCount:
		return a.n < b.n
	case a.kind == ageStamp:
		return len(a.s) == len(b.s) && a.s > b.s
	}
	return false
}

func parseAge(suffix string) rotAge {
	if len(suffix) >= 1 && len(suffix) <= 4 {
		if n, err := strconv.Atoi(suffix); err == nil && n >= 0 {
			return rotAge{kind: ageCount, n: n}
		}
	}
	if len(suffix) >= 6 && suffix[0] >= '0' && suffix[0] <= '9' &&
		strings.Trim(suffix, "0123456789-_.:T") == "" {
		return rotAge{kind: ageStamp, s: suffix}
	}
	return rotAge{}
}

// rotatedName reports whether name may be a rotation of the file named
// base: as copyName, optionally followed by a compression suffix (kind,
// lower case; "" for none). In another directory than the file's
// (sameDir false), base itself is a rotation's name too (olddir/app.log.gz).
func rotatedName(name, base string, sameDir bool) (kind string, age rotAge, ok bool) {
	stripped := name
	lower := strings.ToLower(name)
	for _, ext := range compressedExts {
		if strings.HasSuffix(lower, ext) {
			kind, stripped = ext, name[:len(name)-len(ext)]
			break
		}
	}
	if stripped == base {
		return kind, rotAge{}, !sameDir || kind != ""
	}
	ext := filepath.Ext(base)
	for _, stem := range []string{base, strings.TrimSuffix(base, ext)} {
		if stem == "" || len(stripped) <= len(stem)+1 || !strings.HasPrefix(stripped, stem) || !strings.ContainsRune(".-_", rune(stripped[len(stem)])) {
			continue
		}
		suffix := stripped[len(stem)+1:]
		if stem != base && ext != "" {
			suffix = strings.TrimSuffix(suffix, ext) // app-20261206.log, app.1.log
		}
		return kind, parseAge(suffix), true
	}
	return "", rotAge{}, false
}

// rotatedFile is a file that may be a rotation of a followed file.
type rotatedFile struct {
	path string
	st   fileStat
	kind string // compression suffix; "" for plain bytes
	age  rotAge
}

func (c rotatedFile) compressed() bool { return c.kind != "" }

// rotatedFiles lists the regular files named as rotations of the file at
// fpath in its rotation directories.
func (r *runner) rotatedFiles(fpath string) []rotatedFile {
	var out []rotatedFile
	base := filepath.Base(fpath)
	for i, dir := range r.rotationDirs(fpath) {
		ents, err := r.readDir(dir)
		if err != nil {
			continue // gone or unreadable: nothing to find there
		}
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			kind, age, ok := rotatedName(e.Name(), base, i == 0)
			if !ok {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if p == fpath {
				continue
			}
			st, err := statPath(p)
			if err != nil || !st.regular {
				continue
			}
			out = append(out, rotatedFile{path: p, st: st, kind: kind, age: age})
		}
	}
	// The last modified first: of several that hold the content, the
	// latest rotation is taken.
	slices.SortStableFunc(out, func(a, b rotatedFile) int {
		switch {
		case a.st.mtime > b.st.mtime:
			return -1
		case a.st.mtime < b.st.mtime:
			return 1
		}
		return strings.Compare(a.path, b.path)
	})
	return out
}

// unreadable lists the compressed rotations among cands that the source
// cannot decompress (for the warning that says lines are lost).
func unreadable(cands []rotatedFile) []string {
	var out []string
	for _, c := range cands {
		if c.compressed() && decoders[c.kind] == nil {
			out = append(out, c.path)
		}
	}
	return out
}

// readDir lists dir, once per search at start (startDirs) for the many
// files of one directory.
func (r *runner) readDir(dir string) ([]os.DirEntry, error) {
	if r.startDirs == nil {
		return os.ReadDir(dir)
	}
	if ents, ok := r.startDirs[dir]; ok {
		return ents, nil
	}
	ents, err := os.ReadDir(dir)
	if err == nil {
		r.startDirs[dir] = ents
	}
	return ents, err
}

// rotationOf describes path, a rotation of the file at fpath found by
// other means (its inode, copyOf).
func rotationOf(path string, st fileStat, fpath string) rotatedFile {
	kind, age, _ := rotatedName(filepath.Base(path), filepath.Base(fpath), filepath.Dir(path) == filepath.Dir(fpath))
	return rotatedFile{path: path, st: st, kind: kind, age: age}
}

// content is an open rotation: its bytes, decompressed.
type content struct {
	fd  *os.File
	dec io.ReadCloser // nil for plain bytes
	r   io.Reader
}

func (c *content) Close() {
	if c.dec != nil {
		_ = c.dec.Close()
	}
	_ = c.fd.Close()
}

// openContent opens c (which must still be the file that was listed) and
// its decoder. An error from the decoder means a corrupt header.
func openContent(c rotatedFile) (*content, error) {
	fd, err := osOpen(c.path)
	if err != nil {
		return nil, err
	}
	if fst, err := statFile(fd); err != nil || fst.key != c.st.key {
		_ = fd.Close()
		return nil, fmt.Errorf("%s: replaced while being opened", c.path)
	}
	if !c.compressed() {
		return &content{fd: fd, r: fd}, nil
	}
	newDec := decoders[c.kind]
	if newDec == nil {
		_ = fd.Close()
		return nil, fmt.Errorf("%s: %s files cannot be read", c.path, c.kind)
	}
	dec, err := newDec(bufio.NewReaderSize(fd, 64<<10))
	if err != nil {
		_ = fd.Close()
		return nil, &decodeError{err}
	}
	return &content{fd: fd, dec: dec, r: dec}, nil
}

// decodeError is a compressed file whose bytes do not decode.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return "corrupt compressed data: " + e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

// head reads the first n bytes of c's content into buf (fewer if it is
// shorter).
func head(c rotatedFile, buf []byte) (int, error) {
	ct, err := openContent(c)
	if err != nil {
		return 0, err
	}
	defer ct.Close()
	n, err := io.ReadFull(ct.r, buf)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	}
	return n, err
}

// compressedError counts and reports a compressed rotation that could not
// be read to its end.
func (r *runner) compressedError(c rotatedFile, f *file, at int64, err error) {
	r.c.compressedErrors++
	r.s.log.Warn("compressed rotated file is corrupt or truncated: the lines read before the error were sent, the rest of the file is lost",
		"path", c.path, "was", f.lastPath, "file_id", f.inc.id, "offset", at, "error", err)
}

// readCompressedRotation looks among cands (rotations of f's file) for a
// compressed file that holds f's content: its decompressed bytes begin
// with f's fingerprint and reach f's offset. The first found is read from
// the offset to its end, at once (before the loop starts: the rest of the
// old content is sent before the files that followed it). It returns the
// file found; err is emit's.
func (r *runner) readCompressedRotation(f *file, cands []rotatedFile, taken map[devIno]bool) (rotatedFile, bool, error) {
	if f.fp.n == 0 {
		return rotatedFile{}, false, nil // nothing to tell it by
	}
	for _, c := range cands {
		// (Its inode may be f's: freed when the rotation was compressed
		// and removed, and taken by the compressed file.)
		if !c.compressed() || decoders[c.kind] == nil || taken[c.st.key] {
			continue
		}
		if ok, err := r.readCompressed(f, c); ok || err != nil {
			taken[c.st.key] = true
			return c, ok, err
		}
		if err := r.ctx.Err(); err != nil {
			return rotatedFile{}, false, err
		}
	}
	return rotatedFile{}, false, nil
}

// readCompressed reads the compressed file c as f's content if it is:
// its decompressed bytes begin with f's fingerprint and reach f's offset.
// The lines after the offset are emitted under f's FileID, streaming
// (memory is bounded by the decoder's window and one read buffer), and f
// is marked read to its end (its checkpoint entry then says so). A decode
// error after the offset is counted and reported; what was read before it
// is sent. It reports whether c was f's; err is emit's.
func (r *runner) readCompressed(f *file, c rotatedFile) (bool, error) {
	ct, err := openContent(c)
	if err != nil {
		var de *decodeError
		if errors.As(err, &de) {
			r.s.log.Debug("compressed rotation cannot be decoded", "path", c.path, "error", err)
		}
		return false, nil
	}
	defer ct.Close()
	fpn := f.fp.n
	hd := r.fpBuf[:fpn]
	if n, _ := io.ReadFull(ct.r, hd); n < fpn || sumBytes(hd) != f.fp.sum {
		return false, nil // another file (or too short, or corrupt at its start: cannot be told)
	}
	// Skip to the offset, keeping the byte before it (a line start?) and,
	// when the offset is inside the fingerprinted head, what follows it.
	buf := r.buf
	k, last := 0, byte('\n')
	switch off := f.offset; {
	case off < int64(fpn):
		k = copy(buf, hd[off:])
		if off > 0 {
			last = hd[off-1]
		}
	default:
		last = hd[fpn-1]
		for skip := off - int64(fpn); skip > 0; {
			if err := r.ctx.Err(); err != nil {
				return true, err // f's by its first bytes: its entry stays as it was
			}
			n, err := ct.r.Read(buf[:min(skip, readChunk)])
			if n > 0 {
				last = buf[n-1]
				skip -= int64(n)
			}
			if skip > 0 && err != nil {
				if errors.Is(err, io.EOF) {
					return false, nil // shorter than the checkpoint: not f's content
				}
				// f's by its first bytes, but unreadable before the
				// offset: the lines after it are lost.
				r.compressedError(c, f, off-skip, err)
				r.markRead(f)
				return true, nil
			}
		}
	}
	f.sp.cont = f.offset > 0 && last != '\n'
	f.midLine = false
	if f.offset > 0 {
		r.s.log.Info("reading the rest of a file rotated and compressed while the source was stopped",
			"path", c.path, "was", f.lastPath, "file_id", f.inc.id, "offset", f.offset)
	}
	records0, bytes0, from := r.c.records, r.c.bytes, f.offset
	base := f.offset
	f.offset += int64(k)
	feed := func() error {
		r.batching = r.batch != nil && r.s.ml == nil
		n, err := f.sp.feed(buf[:k], base)
		if r.batching {
			r.batching = false
			if ferr := r.flushBatch(); err == nil {
				err = ferr
			}
		}
		if n < k {
			copy(buf, buf[n:k])
		}
		base += int64(n)
		k -= n
		return err
	}
	if k > 0 {
		if err := feed(); err != nil {
			return true, err
		}
	}
	var derr error
	for {
		if err := r.ctx.Err(); err != nil {
			return true, err
		}
		n, err := ct.r.Read(buf[k : k+readChunk])
		if n > 0 {
			f.offset += int64(n)
			f.offsetA.Store(f.offset)
			k += n
			if err := feed(); err != nil {
				return true, err
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				derr = err
			}
			break
		}
	}
	f.spill = append(f.spill[:0], buf[:k]...)
	if err := r.flushPending(f); err != nil { // a last line without its newline
		return true, err
	}
	r.markRead(f)
	n := r.c.records - records0
	r.c.compressedFiles++
	r.c.compressedRecords += n
	if derr != nil {
		r.compressedError(c, f, f.offset, derr)
	}
	r.s.log.Info("lines recovered from a file rotated and compressed while the source was stopped",
		"path", c.path, "was", f.lastPath, "file_id", f.inc.id, "records", n, "bytes", r.c.bytes-bytes0,
		"from", from, "to", f.offset)
	return true, nil
}

// markRead notes that f, which can grow no more, was read to its end.
func (r *runner) markRead(f *file) {
	f.offsetA.Store(f.offset)
	f.sizeA.Store(f.offset)
	f.size = f.offset
	r.s.mu.Lock()
	f.end = f.offset
	f.lastSeen = r.now
	r.s.mu.Unlock()
}

// shadow registers a file for content found in a rotation that the source
// does not follow otherwise (a compressed copy, a version never seen): it
// is gone from the start (never opened: read by readCompressed), its
// records go under its own FileID, and its checkpoint entry (the
// rotation's inode, the lost file's path) lets an interrupted read resume
// at the next start.
func (r *runner) shadow(c rotatedFile, was string, offset int64, fp fingerprint) *file {
	g := &file{key: c.st.key, birth: c.st.birth, lastPath: was, lastSeen: r.now, state: stGone, offset: offset, midLine: offset > 0, eof: true}
	g.setFingerprint(fp)
	g.sp = r.newSplitter(g)
	g.offsetA.Store(offset)
	g.sizeA.Store(offset)
	inc := &incarnation{id: newFileID(c.st.key), f: g}
	inc.committed.Store(offset)
	g.inc = inc
	r.s.mu.Lock()
	r.s.byID[inc.id] = inc
	r.s.mu.Unlock()
	return g
}

// unshadow removes a shadow that held nothing.
func (r *runner) unshadow(g *file) {
	r.s.mu.Lock()
	delete(r.s.byID, g.inc.id)
	r.s.dropped = append(r.s.dropped, g.inc.id)
	r.s.mu.Unlock()
}

// readCompressedCopy looks for the copy of the file at was, compressed
// already (copytruncate with compress), when no plain copy was found: a
// compressed rotation whose decompressed bytes begin with fp and reach
// offset. Its lines after offset (the file's checkpoint or read offset) are
// read under a FileID of their own (the file is read again from 0 under a
// new one).
func (r *runner) readCompressedCopy(was string, offset int64, fp fingerprint, cands []rotatedFile, taken map[devIno]bool) (rotatedFile, bool, error) {
	if fp.n == 0 {
		return rotatedFile{}, false, nil // nothing to tell it by
	}
	for _, c := range cands {
		if !c.compressed() || decoders[c.kind] == nil || taken[c.st.key] {
			continue
		}
		g := r.shadow(c, was, offset, fp)
		ok, err := r.readCompressed(g, c)
		if !ok {
			r.unshadow(g)
		} else {
			taken[c.st.key] = true
		}
		if ok || err != nil {
			return c, ok, err
		}
		if err := r.ctx.Err(); err != nil {
			return rotatedFile{}, false, err
		}
	}
	return rotatedFile{}, false, nil
}

// readNewer reads, whole, the rotations of the file at fpath that were
// written and rotated away while the source was stopped: it stopped while
// the file held f's content, which was found in the rotation found; the
// rotations named as newer than it (app.log.1 is newer than app.log.2,
// app.log-20261207 than app.log-20261206) hold versions of the file the
// source never saw, unless their first bytes are f's, the file's now, or
// those of a file the source has a checkpoint of (read before), or of
// another of them (app.log.1 and app.log.1.gz while logrotate compressed
// it). They are read oldest first, after the rest of f's content; a
// compressed one at once, a plain one as a rotated file.
func (r *runner) readNewer(f *file, fpath string, found rotatedFile, cands []rotatedFile, taken map[devIno]bool) error {
	if found.age.kind == ageUnknown {
		return nil
	}
	fpb := r.cfg.FingerprintBytes
	cur := make([]byte, fpb)
	ncur := 0
	if fd, err := osOpen(fpath); err == nil {
		ncur, _ = io.ReadFull(fd, cur)
		_ = fd.Close()
	}
	cur = cur[:ncur]
	type pick struct {
		c    rotatedFile
		head []byte
	}
	var picks []pick
	sameStart := func(a, b []byte) bool {
		n := min(len(a), len(b))
		return n > 0 && bytes.Equal(a[:n], b[:n])
	}
	for _, c := range cands {
		if c.path == found.path || c.st.key == found.st.key || taken[c.st.key] ||
			!c.age.newerThan(found.age) || (c.compressed() && decoders[c.kind] == nil) {
			continue
		}
		if k := r.byKey[c.st.key]; k != nil && k.state != stGone {
			continue // followed: read as any file is
		}
		hd := make([]byte, fpb)
		n, err := head(c, hd)
		if err != nil || n == 0 {
			if err != nil {
				r.s.log.Warn("a rotated file newer than the checkpoint cannot be read", "path", c.path, "error", err)
			}
			continue
		}
		hd = hd[:n]
		if (n >= f.fp.n && sumBytes(hd[:f.fp.n]) == f.fp.sum) || sameStart(hd, cur) || r.checkpointed(hd) ||
			slices.ContainsFunc(picks, func(p pick) bool { return sameStart(p.head, hd) }) {
			continue
		}
		picks = append(picks, pick{c, hd})
	}
	// Oldest first.
	slices.SortStableFunc(picks, func(a, b pick) int {
		switch {
		case a.c.age.newerThan(b.c.age):
			return 1
		case b.c.age.newerThan(a.c.age):
			return -1
		}
		return 0
	})
	for _, p := range picks {
		c := p.c
		taken[c.st.key] = true
		fp := fingerprint{n: len(p.head), sum: sumBytes(p.head)}
		const msg = "reading a file written and rotated away while the source was stopped (never seen)"
		if !c.compressed() {
			fd, err := osOpen(c.path)
			if err != nil {
				r.s.log.Warn("a rotated file newer than the checkpoint cannot be read", "path", c.path, "error", err)
				continue
			}
			r.drainCopy(fd, c.path, c.st, fpath, 0, fp, msg)
			continue
		}
		r.s.log.Info(msg, "path", c.path, "was", fpath)
		g := r.shadow(c, fpath, 0, fp)
		ok, err := r.readCompressed(g, c)
		if !ok {
			r.unshadow(g)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkpointed reports whether a file the source has a checkpoint of
// begins with hd (up to its fingerprint's length).
func (r *runner) checkpointed(hd []byte) bool {
	for _, g := range r.byKey {
		if n := g.fp.n; n > 0 && n <= len(hd) && sumBytes(hd[:n]) == g.fp.sum {
			return true
		}
	}
	return false
}
