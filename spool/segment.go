package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
)

// The byte layout is drawn in doc.go.
const (
	segHeaderSize   = 32
	segVersion      = 1
	frameHeaderSize = 16
	sealPayloadSize = 24
	sealFrameSize   = frameHeaderSize + sealPayloadSize
	// readBufSize bounds a frame reader's window: the memory a reader or a
	// recovery scan uses whatever the size of the backlog.
	readBufSize = 256 << 10
)

var (
	segMagic   = [4]byte{'K', 'S', 'P', 'L'}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// errBadFrame means the bytes at an offset are not a valid frame: torn,
// corrupt or not a frame at all. Other errors from a frame reader are I/O
// errors.
var errBadFrame = errors.New("spool: bad frame")

// segHeader is the fixed header at the start of every segment file.
type segHeader struct {
	first ID     // ID of the segment's first frame; also its file name
	salt  uint32 // random per segment; seeds every frame CRC of the file
}

func (h segHeader) encode() [segHeaderSize]byte {
	var b [segHeaderSize]byte
	copy(b[0:4], segMagic[:])
	b[4] = segVersion
	binary.LittleEndian.PutUint64(b[8:16], uint64(h.first))
	binary.LittleEndian.PutUint32(b[16:20], h.salt)
	binary.LittleEndian.PutUint32(b[28:32], crc32.Checksum(b[:28], castagnoli))
	return b
}

// headerError says why a segment header was refused.
type headerError struct{ reason string }

func (e *headerError) Error() string { return "segment header: " + e.reason }

func parseSegHeader(b []byte) (segHeader, error) {
	if len(b) < segHeaderSize {
		return segHeader{}, &headerError{fmt.Sprintf("file too short (%d bytes)", len(b))}
	}
	if [4]byte(b[0:4]) != segMagic {
		return segHeader{}, &headerError{"bad magic"}
	}
	if got, want := binary.LittleEndian.Uint32(b[28:32]), crc32.Checksum(b[:28], castagnoli); got != want {
		return segHeader{}, &headerError{"checksum mismatch"}
	}
	if b[4] != segVersion {
		return segHeader{}, &headerError{fmt.Sprintf("unsupported version %d (this build reads version %d)", b[4], segVersion)}
	}
	h := segHeader{first: ID(binary.LittleEndian.Uint64(b[8:16])), salt: binary.LittleEndian.Uint32(b[16:20])}
	if h.first == 0 {
		return segHeader{}, &headerError{"first ID is 0"}
	}
	return h, nil
}

// putFrameHeader fills hdr (frameHeaderSize bytes) for payload p with ID id.
func putFrameHeader(hdr []byte, salt uint32, id ID, p []byte) {
	putFrameHeaderParts(hdr, salt, id, p, nil)
}

// putFrameHeaderParts is putFrameHeader for the payload p followed by q.
func putFrameHeaderParts(hdr []byte, salt uint32, id ID, p, q []byte) {
	binary.LittleEndian.PutUint32(hdr[4:8], uint32(len(p)+len(q)))
	binary.LittleEndian.PutUint64(hdr[8:16], uint64(id))
	c := crc32.Update(salt, castagnoli, hdr[4:16])
	c = crc32.Update(c, castagnoli, p)
	c = crc32.Update(c, castagnoli, q)
	binary.LittleEndian.PutUint32(hdr[0:4], c)
}

// appendSeal appends the seal frame that closes a segment: ID 0, payload
// first, last and the seal's own offset.
func appendSeal(b []byte, h segHeader, last ID, off int64) []byte {
	var p [sealPayloadSize]byte
	binary.LittleEndian.PutUint64(p[0:8], uint64(h.first))
	binary.LittleEndian.PutUint64(p[8:16], uint64(last))
	binary.LittleEndian.PutUint64(p[16:24], uint64(off))
	var hdr [frameHeaderSize]byte
	putFrameHeader(hdr[:], h.salt, 0, p[:])
	return append(append(b, hdr[:]...), p[:]...)
}

// parseSeal checks that b (sealFrameSize bytes read at off) is the seal of
// the segment h and returns the segment's last ID.
func parseSeal(b []byte, h segHeader, off int64) (ID, bool) {
	if len(b) != sealFrameSize {
		return 0, false
	}
	if binary.LittleEndian.Uint32(b[4:8]) != sealPayloadSize || binary.LittleEndian.Uint64(b[8:16]) != 0 {
		return 0, false
	}
	c := crc32.Update(h.salt, castagnoli, b[4:])
	if c != binary.LittleEndian.Uint32(b[0:4]) {
		return 0, false
	}
	p := b[frameHeaderSize:]
	first := ID(binary.LittleEndian.Uint64(p[0:8]))
	last := ID(binary.LittleEndian.Uint64(p[8:16]))
	if first != h.first || int64(binary.LittleEndian.Uint64(p[16:24])) != off || last < first-1 {
		return 0, false
	}
	return last, true
}

// readBufs holds read windows (readBufSize) between uses: a spool takes one
// for recovery and one for its reader, and gives them back at the end of
// recovery and at Close, so reopening spools does not allocate and clear
// half a megabyte each time.
var readBufs = sync.Pool{New: func() any {
	b := make([]byte, readBufSize)
	return &b
}}

// frameReader reads frames from one segment file through a bounded window.
// It is not safe for concurrent use. Bytes below the end passed to it must
// not change while it is in use (segments are append-only).
type frameReader struct {
	f      io.ReaderAt
	salt   uint32
	maxLen int64  // largest payload accepted
	buf    []byte // window storage, cap readBufSize
	win    []byte // valid window: file bytes [winOff, winOff+len(win))
	winOff int64
}

func newFrameReader(f io.ReaderAt, salt uint32, maxLen int64, buf []byte) *frameReader {
	if cap(buf) < readBufSize {
		buf = make([]byte, readBufSize)
	}
	return &frameReader{f: f, salt: salt, maxLen: maxLen, buf: buf[:cap(buf)]}
}

// window returns the file bytes [off, off+n), n <= readBufSize, reading
// ahead up to end. A short file reads as errBadFrame.
func (r *frameReader) window(off int64, n int, end int64) ([]byte, error) {
	if off >= r.winOff && off+int64(n) <= r.winOff+int64(len(r.win)) {
		i := off - r.winOff
		return r.win[i : i+int64(n)], nil
	}
	m := min(int64(len(r.buf)), end-off)
	if m < int64(n) {
		return nil, errBadFrame
	}
	k, err := r.f.ReadAt(r.buf[:m], off)
	r.win, r.winOff = r.buf[:k], off
	if k < n {
		r.win = nil
		if err == nil || errors.Is(err, io.EOF) {
			return nil, errBadFrame // the file is shorter than we were told
		}
		return nil, err
	}
	return r.win[:n], nil
}

// header reads the frame header at off and checks what can be checked
// without the payload: the frame fits before end and its length is allowed.
func (r *frameReader) header(off, end int64) (id ID, plen int64, crc uint32, err error) {
	if end-off < frameHeaderSize {
		return 0, 0, 0, errBadFrame
	}
	h, err := r.window(off, frameHeaderSize, end)
	if err != nil {
		return 0, 0, 0, err
	}
	plen = int64(binary.LittleEndian.Uint32(h[4:8]))
	id = ID(binary.LittleEndian.Uint64(h[8:16]))
	if plen > r.maxLen || plen > end-off-frameHeaderSize {
		return 0, 0, 0, errBadFrame
	}
	return id, plen, binary.LittleEndian.Uint32(h[0:4]), nil
}

// frame validates the frame at off, which must end at or before end. When
// keep is set the payload is appended to dst. It returns the frame's ID,
// dst and the offset after the frame; errBadFrame if the bytes there are not
// a valid frame.
func (r *frameReader) frame(off, end int64, dst []byte, keep bool) (ID, []byte, int64, error) {
	id, plen, want, err := r.header(off, end)
	if err != nil {
		return 0, dst, 0, err
	}
	h, _ := r.window(off, frameHeaderSize, end) // still in the window
	c := crc32.Update(r.salt, castagnoli, h[4:16])
	n0 := len(dst)
	pos, left := off+frameHeaderSize, plen
	for left > 0 {
		chunk := min(left, int64(len(r.buf)))
		b, err := r.window(pos, int(chunk), end)
		if err != nil {
			return 0, dst[:n0], 0, err
		}
		c = crc32.Update(c, castagnoli, b)
		if keep {
			dst = append(dst, b...)
		}
		pos += chunk
		left -= chunk
	}
	if c != want {
		return 0, dst[:n0], 0, errBadFrame
	}
	return id, dst, pos, nil
}

// resync looks for the next valid frame after a bad one. goodEnd is where the
// last good frame ended (the header's end if none) and after its ID (first-1
// if none). Frames of a segment carry consecutive IDs and are at least
// frameHeaderSize long, so a frame found at p may only carry an ID in
// (after, after+1+(p-goodEnd)/frameHeaderSize]; together with the salted
// CRC this keeps bytes inside a payload from passing for a frame. from is
// the first offset to try. It returns the offset and ID of the frame found,
// or ok false if there is none before end.
func (r *frameReader) resync(from, end, goodEnd int64, after ID) (int64, ID, bool, error) {
	for p := from; end-p >= frameHeaderSize; p++ {
		id, _, _, err := r.header(p, end)
		if err != nil {
			if errors.Is(err, errBadFrame) {
				continue
			}
			return 0, 0, false, err
		}
		if !plausible(id, p, goodEnd, after) {
			continue
		}
		got, _, _, err := r.frame(p, end, nil, false)
		switch {
		case err == nil && got == id:
			return p, id, true, nil
		case err != nil && !errors.Is(err, errBadFrame):
			return 0, 0, false, err
		}
	}
	return 0, 0, false, nil
}

// plausible reports whether a frame found at p may carry id, given the last
// good frame (ID after) ended at goodEnd. See resync.
func plausible(id ID, p, goodEnd int64, after ID) bool {
	return id > after && uint64(id-after) <= 1+uint64(p-goodEnd)/frameHeaderSize
}

// scanResult is what a full scan of a segment found.
type scanResult struct {
	last    ID    // ID of the last valid frame; first-1 if none
	end     int64 // offset after the last valid frame
	frames  int64 // valid frames
	skipped int64 // bytes skipped between valid frames (corrupt regions)
}

// scanFrames walks every frame of a segment from the header to size,
// skipping corrupt regions, and reports where the last valid frame ends.
// Bytes after that are a torn or corrupt tail. Only I/O errors are returned.
func scanFrames(r *frameReader, first ID, size int64) (scanResult, error) {
	res := scanResult{last: first - 1, end: segHeaderSize}
	off := int64(segHeaderSize)
	for off < size {
		id, _, next, err := r.frame(off, size, nil, false)
		if err != nil && !errors.Is(err, errBadFrame) {
			return res, err
		}
		if err == nil && plausible(id, off, res.end, res.last) {
			res.skipped += off - res.end
			res.last, res.end, off = id, next, next
			res.frames++
			continue
		}
		p, _, ok, err := r.resync(off+1, size, res.end, res.last)
		if err != nil {
			return res, err
		}
		if !ok {
			break
		}
		off = p
	}
	return res, nil
}
