package file

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
)

// devIno is a file's physical identity while it exists. After the file is
// deleted (and no descriptor holds it), the inode may be reused by another
// file: birth time and fingerprint tell the two apart.
type devIno struct{ dev, ino uint64 }

// fileStat is what the source needs from stat(2)/statx(2).
type fileStat struct {
	key     devIno
	birth   int64 // ns since the epoch; 0 where the file system has no birth time
	size    int64
	mtime   int64 // ns since the epoch
	nlink   uint64
	regular bool
}

// useBirthTime lets tests exercise the fingerprint-only identity check that
// file systems without birth times get.
var useBirthTime = true

// fingerprint is a hash of a file's first n bytes (n is at most
// Config.FingerprintBytes; less while the file is shorter).
type fingerprint struct {
	n   int
	sum uint64
}

func (fp fingerprint) String() string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], fp.sum)
	return hex.EncodeToString(b[:])
}

func parseFingerprint(s string, n int) (fingerprint, error) {
	if n == 0 && s == "" {
		return fingerprint{}, nil
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 8 || n < 0 {
		return fingerprint{}, fmt.Errorf("bad fingerprint %q/%d", s, n)
	}
	return fingerprint{n: n, sum: binary.BigEndian.Uint64(b)}, nil
}

func sumBytes(b []byte) uint64 {
	h := sha256.Sum256(b)
	return binary.BigEndian.Uint64(h[:8])
}

// readFingerprint hashes the first min(size, max) bytes of f, using buf.
func readFingerprint(f *os.File, max int, buf []byte) (fingerprint, error) {
	n, err := f.ReadAt(buf[:max], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return fingerprint{}, err
	}
	return fingerprint{n: n, sum: sumBytes(buf[:n])}, nil
}

// matches reports whether f still starts with the bytes fp was taken of.
func (fp fingerprint) matches(f *os.File, buf []byte) (bool, error) {
	if fp.n == 0 {
		return true, nil
	}
	n, err := f.ReadAt(buf[:fp.n], 0)
	if n < fp.n {
		if err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		return false, nil // shorter than it was
	}
	return sumBytes(buf[:n]) == fp.sum, nil
}

// newFileID names one incarnation of a file: device, inode and a random tag.
// The tag makes the ID unique across inode reuse and across a truncation
// (after which offsets start again from 0 under a new ID, so a stale commit
// of the old content cannot move the new content's checkpoint).
func newFileID(k devIno) string {
	return fmt.Sprintf("%d:%d:%016x", k.dev, k.ino, rand.Uint64())
}
