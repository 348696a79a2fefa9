package file

import (
	"os"
	"sync/atomic"
	"time"

	"github.com/kplagent/agent/agent/checkpoint"
)

// state is where a file is in its life.
type state uint8

const (
	// stGone: no matching path leads to the file and it is not open. Known
	// from a checkpoint, or drained after a rotation; kept so the file keeps
	// its position if it reappears, until the checkpoint TTL.
	stGone state = iota
	// stIdle: a matching path leads to it; closed, nothing known to read.
	stIdle
	// stWaiting: has data to read and waits for a descriptor.
	stWaiting
	// stOpen: open and followed at its path.
	stOpen
	// stDetached: open, but renamed away or deleted: read to its end, kept
	// for RotateWait after it last grew, then released.
	stDetached
)

func (s state) String() string {
	switch s {
	case stGone:
		return "gone"
	case stIdle:
		return "idle"
	case stWaiting:
		return "waiting"
	case stOpen:
		return "open"
	case stDetached:
		return "rotated"
	}
	return "unknown"
}

// incarnation is one life of a file's content under one FileID. A
// truncation starts a new incarnation of the same file: offsets restart at
// 0 under a new ID. Commit finds incarnations by ID.
type incarnation struct {
	id        string
	f         *file
	committed atomic.Int64

	saved checkpoint.Entry // last entry handed to the store (Source.persistMu)
}

// file is a followed file.
type file struct {
	key   devIno // set at creation
	birth int64

	// Guarded by Source.mu: written by the run goroutine with the lock held,
	// read by Commit, Files and the checkpoint writer.
	inc      *incarnation
	path     string // "" when no matching path leads to it
	lastPath string
	fp       fingerprint
	fpHex    string // fp as written to checkpoints
	lastSeen time.Time
	state    state
	// end is where the file ended when it was read to its end for good
	// (rotated away and let go, or a compressed rotation): 0 if not.
	end int64

	offsetA atomic.Int64 // offset and size, mirrored for Files
	sizeA   atomic.Int64

	// Owned by the run goroutine.
	fd          *os.File
	realPath    string // the target when path is a symlink
	offset      int64  // next byte to read; spill holds [offset-len(spill), offset)
	size        int64  // last size seen
	mtime       int64  // last mtime seen (ns)
	pollSize    int64  // size at the last fingerprint check by a poll (re-checked when it changes)
	spill       []byte // an incomplete last line
	sp          splitter
	ml          mlState
	hot         bool   // may have data: read it
	eof         bool   // the last read found the end
	atEnd       bool   // the last read was short (the end was reached): what comes next is growth, checked against the fingerprint
	inQueue     bool   // in the wait queue
	failed      bool   // the last open (or read) failed: tried again at each scan
	failedGen   uint64 // the scan generation of the last failure
	midLine     bool   // offset was not reached by reading (checkpoint, start position): see use
	findLineEnd bool   // start_at end, but the file could not be read when found: offset is its size then, moved back to the last line end when it is opened
	lastGrowth  time.Time
	detachedAt  time.Time
	turnBytes   int64 // read since the descriptor was given (fair share)
	caughtUp    bool  // reached the end since the descriptor was given
	admitted    time.Time
	seenGen     uint64
	resumed     bool // loaded from a checkpoint (see findCopiedWhileStopped)
	copyChecked bool // its copy was looked for at start: truncated does not look again
}

// id returns the current FileID; run goroutine only.
func (f *file) id() string { return f.inc.id }

// done reports whether a file that can grow no more was read to its end
// and committed there before it was checkpointed: nothing is left to look for.
func (f *file) done() bool { return f.end > 0 && f.offset >= f.end }

// idle reports whether nothing is held or pending for the file.
func (f *file) drained() bool {
	return f.eof && !f.hot && len(f.spill) == 0 && !f.sp.busy() && f.ml.lines == 0
}

// setFingerprint records fp; Source.mu must be held (or f not shared yet).
func (f *file) setFingerprint(fp fingerprint) {
	f.fp = fp
	f.fpHex = fp.String()
}

// entry builds the checkpoint entry; Source.mu must be held.
func (f *file) entry(inc *incarnation) checkpoint.Entry {
	path := f.path
	if path == "" {
		path = f.lastPath
	}
	return checkpoint.Entry{
		Offset:         inc.committed.Load(),
		Path:           path,
		LastSeen:       f.lastSeen,
		Dev:            f.key.dev,
		Ino:            f.key.ino,
		Birth:          f.birth,
		Fingerprint:    f.fpHex,
		FingerprintLen: f.fp.n,
		End:            f.end,
	}
}
