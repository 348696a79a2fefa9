// Package crashfs is an in-memory file system that models what a power cut
// leaves on disk, for tests of crash safety (the spool, the checkpoint
// store). It is test support: nothing in the agent's binary uses it.
//
// Model (what POSIX and the common Linux file systems promise, and no more):
//
//   - A file's content as of its last Sync (fsync/fdatasync) survives. The
//     writes and truncations since then survive in part: a power cut keeps
//     some of them, in order or not (page write-back has no order), and the
//     last one kept may be torn at any byte; a write that extended the file
//     may leave zeros where its data did not make it (the size reached the
//     disk, the data did not).
//   - A directory's entries as of its last SyncDir survive. Each entry
//     created, renamed or removed since then may be found in its old state
//     or its new one after the cut, independently of the others: a new file
//     may vanish, a removed one come back, a rename be undone.
//
// A cut is scheduled by operation count (Cut): the n-th mutating operation
// (a write, truncation, sync, creation, rename, removal or directory sync)
// finds the power off and fails with EIO, as does everything after it, reads
// included: the process is dead. Restart builds the post-cut disk (choosing
// at random within the model) and powers on; handles opened before it fail.
package crashfs

import (
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"
)

// FS is the simulated file system. All methods are safe for concurrent use.
type FS struct {
	mu    sync.Mutex
	rng   *rand.Rand
	dirs  map[string]*dir
	gen   int   // bumped by Restart: handles from an earlier one are dead
	ops   int64 // mutating operations since the last Restart
	cutAt int64 // the operation that finds the power off; 0: none scheduled
	off   bool  // the power is off
}

type dir struct {
	live    map[string]*inode // what the running system sees
	durable map[string]*inode // what survives a cut for sure
}

type inode struct {
	data    []byte // what reads see now
	synced  []byte // the content as of the last Sync
	pending []op   // writes and truncations since the last Sync
}

// op is a write (data at off) or a truncation (to size).
type op struct {
	off   int64
	data  []byte
	trunc bool
	size  int64
}

// New returns an empty file system whose choices at a cut come from seed.
func New(seed uint64) *FS {
	return &FS{rng: rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15)), dirs: map[string]*dir{}}
}

// Cut schedules a power cut at the n-th mutating operation from now (n >= 1);
// 0 cancels it.
func (f *FS) Cut(n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n <= 0 {
		f.cutAt = 0
		return
	}
	f.cutAt = f.ops + n
}

// Ops returns the number of mutating operations since the last Restart.
func (f *FS) Ops() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ops
}

// Off reports whether the power is off (a scheduled cut happened).
func (f *FS) Off() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.off
}

// PowerOff cuts the power now, whether or not a cut was scheduled.
func (f *FS) PowerOff() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.off = true
}

// Restart turns what the disk holds at the cut (or now, if the power is
// still on) into the new state: every file holds a content the model allows,
// every directory the entries it allows, and all of it is durable. Handles
// opened before fail from now on.
func (f *FS) Restart() {
	f.mu.Lock()
	defer f.mu.Unlock()
	after := map[*inode]*inode{}
	for _, d := range f.dirs {
		names := map[string]bool{}
		for n := range d.live {
			names[n] = true
		}
		for n := range d.durable {
			names[n] = true
		}
		sorted := make([]string, 0, len(names))
		for n := range names {
			sorted = append(sorted, n)
		}
		sort.Strings(sorted) // the same seed makes the same choices
		next := map[string]*inode{}
		for _, n := range sorted {
			ino := d.durable[n]
			if l := d.live[n]; l != ino && f.rng.IntN(2) == 0 {
				ino = l
			}
			if ino == nil {
				continue
			}
			if a, ok := after[ino]; ok { // two names for one file: a rename seen half
				c := append([]byte(nil), a.data...)
				next[n] = &inode{data: c, synced: c}
				continue
			}
			data := f.survivor(ino)
			a := &inode{data: data, synced: data}
			after[ino] = a
			next[n] = a
		}
		d.live, d.durable = next, cloneMap(next)
	}
	f.gen++
	f.ops, f.cutAt, f.off = 0, 0, false
}

// survivor chooses what a file holds after a cut: its synced content with
// some of the pending operations applied, the last applied one maybe torn.
func (f *FS) survivor(ino *inode) []byte {
	b := append([]byte(nil), ino.synced...)
	p := ino.pending
	if len(p) == 0 {
		return b
	}
	inOrder := f.rng.IntN(2) == 0
	keep := f.rng.IntN(len(p) + 1)
	for i, o := range p {
		apply := i < keep
		if !inOrder {
			apply = f.rng.IntN(2) == 0
		}
		torn := false
		if !apply {
			// The operation right after the kept prefix may be half done.
			torn = (inOrder && i == keep) || (!inOrder && f.rng.IntN(3) == 0)
			if !torn {
				continue
			}
		}
		if o.trunc {
			if apply || f.rng.IntN(2) == 0 {
				b = resize(b, o.size)
			}
			continue
		}
		data := o.data
		if torn {
			data = data[:f.rng.IntN(len(data)+1)]
			if f.rng.IntN(4) == 0 {
				// The size made it, the data did not: zeros.
				data = append(append([]byte(nil), data...), make([]byte, len(o.data)-len(data))...)
			}
		}
		b = writeAt(b, data, o.off)
	}
	return b
}

func resize(b []byte, size int64) []byte {
	if int64(len(b)) >= size {
		return b[:size]
	}
	return append(b, make([]byte, size-int64(len(b)))...)
}

func writeAt(b, data []byte, off int64) []byte {
	if end := off + int64(len(data)); end > int64(len(b)) {
		b = resize(b, end)
	}
	copy(b[off:], data)
	return b
}

func cloneMap(m map[string]*inode) map[string]*inode {
	c := make(map[string]*inode, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// errOff is what every operation returns once the power is off.
func errOff(op, path string) error { return &os.PathError{Op: op, Path: path, Err: syscall.EIO} }

// step counts a mutating operation and reports whether it may run. f.mu is
// held.
func (f *FS) step() bool {
	if f.off {
		return false
	}
	f.ops++
	if f.cutAt > 0 && f.ops >= f.cutAt {
		f.off = true
		return false
	}
	return true
}

func (f *FS) dirOf(path string) (*dir, string) {
	d := f.dirs[filepath.Dir(path)]
	return d, filepath.Base(path)
}

// MkdirAll creates the directory (and its parents); directories are
// durable at once: the tests create them before any cut matters.
func (f *FS) MkdirAll(path string, _ os.FileMode) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off {
		return errOff("mkdir", path)
	}
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		if f.dirs[p] == nil {
			f.dirs[p] = &dir{live: map[string]*inode{}, durable: map[string]*inode{}}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// OpenFile opens name. Supported flags: O_RDONLY, O_WRONLY, O_RDWR,
// O_CREATE, O_EXCL, O_TRUNC, O_APPEND.
func (f *FS) OpenFile(name string, flag int, _ os.FileMode) (*File, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off {
		return nil, errOff("open", name)
	}
	d, base := f.dirOf(name)
	if d == nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.ENOENT}
	}
	ino := d.live[base]
	switch {
	case ino == nil && flag&os.O_CREATE == 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.ENOENT}
	case ino != nil && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EEXIST}
	case ino == nil:
		if !f.step() {
			return nil, errOff("open", name)
		}
		ino = &inode{}
		d.live[base] = ino
	}
	if flag&os.O_TRUNC != 0 && len(ino.data) > 0 {
		if !f.step() {
			return nil, errOff("open", name)
		}
		ino.truncate(0)
	}
	acc := flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	return &File{fs: f, ino: ino, name: name, gen: f.gen,
		read: acc != os.O_WRONLY, write: acc != os.O_RDONLY, append: flag&os.O_APPEND != 0}, nil
}

func (ino *inode) truncate(size int64) {
	ino.data = resize(ino.data, size)
	ino.pending = append(ino.pending, op{trunc: true, size: size})
}

// ReadFile returns the content of name.
func (f *FS) ReadFile(name string) ([]byte, error) {
	fl, err := f.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer fl.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off {
		return nil, errOff("read", name)
	}
	return append([]byte(nil), fl.ino.data...), nil
}

// Remove removes the entry name.
func (f *FS) Remove(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off {
		return errOff("remove", name)
	}
	d, base := f.dirOf(name)
	if d == nil || d.live[base] == nil {
		return &os.PathError{Op: "remove", Path: name, Err: syscall.ENOENT}
	}
	if !f.step() {
		return errOff("remove", name)
	}
	delete(d.live, base)
	return nil
}

// Rename moves oldname to newname, replacing it.
func (f *FS) Rename(oldname, newname string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off {
		return errOff("rename", oldname)
	}
	od, ob := f.dirOf(oldname)
	nd, nb := f.dirOf(newname)
	if od == nil || nd == nil || od.live[ob] == nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: syscall.ENOENT}
	}
	if !f.step() {
		return errOff("rename", oldname)
	}
	ino := od.live[ob]
	delete(od.live, ob)
	nd.live[nb] = ino
	return nil
}

// SyncDir makes the directory's current entries durable.
func (f *FS) SyncDir(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off {
		return errOff("fsync", name)
	}
	d := f.dirs[filepath.Clean(name)]
	if d == nil {
		return &os.PathError{Op: "open", Path: name, Err: syscall.ENOENT}
	}
	if !f.step() {
		return errOff("fsync", name)
	}
	d.durable = cloneMap(d.live)
	return nil
}

// ReadDir lists the directory's entries, sorted by name.
func (f *FS) ReadDir(name string) ([]os.DirEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off {
		return nil, errOff("readdir", name)
	}
	d := f.dirs[filepath.Clean(name)]
	if d == nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.ENOENT}
	}
	out := make([]os.DirEntry, 0, len(d.live))
	for n, ino := range d.live {
		out = append(out, dirEntry{name: n, size: int64(len(ino.data))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

// Names lists the directory's live entries (for test reports).
func (f *FS) Names(name string) []string {
	des, _ := f.ReadDir(name)
	out := make([]string, len(des))
	for i, de := range des {
		out[i] = de.Name()
	}
	return out
}

type dirEntry struct {
	name string
	size int64
}

func (e dirEntry) Name() string               { return e.name }
func (e dirEntry) IsDir() bool                { return false }
func (e dirEntry) Type() fs.FileMode          { return 0 }
func (e dirEntry) Info() (fs.FileInfo, error) { return e, nil }
func (e dirEntry) Size() int64                { return e.size }
func (e dirEntry) Mode() fs.FileMode          { return 0o600 }
func (e dirEntry) ModTime() time.Time         { return time.Time{} }
func (e dirEntry) Sys() any                   { return nil }

// File is an open file. Its methods fail with EIO once the power is off or
// after a Restart.
type File struct {
	fs                  *FS
	ino                 *inode
	name                string
	gen                 int
	pos                 int64
	read, write, append bool
	closed              bool
}

// alive fails once the power is off, after a Restart and after Close.
// fs.mu is held.
func (fl *File) alive(op string) error {
	switch {
	case fl.fs.off || fl.gen != fl.fs.gen:
		return errOff(op, fl.name)
	case fl.closed:
		return &os.PathError{Op: op, Path: fl.name, Err: os.ErrClosed}
	}
	return nil
}

// check is alive plus the access mode. fs.mu is held.
func (fl *File) check(op string, write bool) error {
	if err := fl.alive(op); err != nil {
		return err
	}
	if write && !fl.write || !write && !fl.read {
		return &os.PathError{Op: op, Path: fl.name, Err: syscall.EBADF}
	}
	return nil
}

// Name returns the path the file was opened by.
func (fl *File) Name() string { return fl.name }

func (fl *File) Write(b []byte) (int, error) {
	fl.fs.mu.Lock()
	defer fl.fs.mu.Unlock()
	if err := fl.check("write", true); err != nil {
		return 0, err
	}
	if !fl.fs.step() {
		return 0, errOff("write", fl.name)
	}
	off := fl.pos
	if fl.append {
		off = int64(len(fl.ino.data))
	}
	fl.ino.write(b, off)
	fl.pos = off + int64(len(b))
	return len(b), nil
}

func (ino *inode) write(b []byte, off int64) {
	ino.data = writeAt(ino.data, b, off)
	ino.pending = append(ino.pending, op{off: off, data: append([]byte(nil), b...)})
}

// WriteAt writes at off; like os.File it refuses files opened O_APPEND.
func (fl *File) WriteAt(b []byte, off int64) (int, error) {
	fl.fs.mu.Lock()
	defer fl.fs.mu.Unlock()
	if err := fl.check("write", true); err != nil {
		return 0, err
	}
	if fl.append {
		return 0, fmt.Errorf("crashfs: WriteAt on a file opened with O_APPEND")
	}
	if !fl.fs.step() {
		return 0, errOff("write", fl.name)
	}
	fl.ino.write(b, off)
	return len(b), nil
}

func (fl *File) ReadAt(b []byte, off int64) (int, error) {
	fl.fs.mu.Lock()
	defer fl.fs.mu.Unlock()
	if err := fl.check("read", false); err != nil {
		return 0, err
	}
	if off >= int64(len(fl.ino.data)) {
		return 0, io.EOF
	}
	n := copy(b, fl.ino.data[off:])
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

func (fl *File) Read(b []byte) (int, error) {
	n, err := fl.ReadAt(b, fl.pos)
	fl.pos += int64(n)
	return n, err
}

// Sync makes the file's content durable.
func (fl *File) Sync() error {
	fl.fs.mu.Lock()
	defer fl.fs.mu.Unlock()
	if err := fl.alive("fsync"); err != nil {
		return err
	}
	if !fl.fs.step() {
		return errOff("fsync", fl.name)
	}
	fl.ino.synced = append([]byte(nil), fl.ino.data...)
	fl.ino.pending = nil
	return nil
}

// Truncate changes the file's size.
func (fl *File) Truncate(size int64) error {
	fl.fs.mu.Lock()
	defer fl.fs.mu.Unlock()
	if err := fl.check("truncate", true); err != nil {
		return err
	}
	if !fl.fs.step() {
		return errOff("truncate", fl.name)
	}
	fl.ino.truncate(size)
	return nil
}

// Size returns the file's current size.
func (fl *File) Size() (int64, error) {
	fl.fs.mu.Lock()
	defer fl.fs.mu.Unlock()
	if err := fl.alive("stat"); err != nil {
		return 0, err
	}
	return int64(len(fl.ino.data)), nil
}

// Close closes the file; it never fails.
func (fl *File) Close() error {
	fl.fs.mu.Lock()
	defer fl.fs.mu.Unlock()
	fl.closed = true
	return nil
}
