package file

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"sync"

	"github.com/fsnotify/fsnotify"
)

// maxHints bounds the paths remembered between two turns of the run loop;
// beyond it the loop rescans everything instead (as after a kernel queue
// overflow).
const maxHints = 16 << 10

// hints collects file system events for the run loop: which paths changed
// and how, coalesced, plus a wake-up. Events are hints only: the loop always
// checks the file system itself, and scans and polls cover lost events.
//
// Hints also hold new files open. The run loop may be blocked in emit for
// a long time (backpressure); a file created and rotated away meanwhile
// would be out of reach by the time the loop looks. So the event goroutine
// opens each new matching file at once and keeps the descriptor until the
// loop adopts it (within the source's descriptor pool, shared with the
// loop: held files count against max_open_files and the process budget).
type hints struct {
	mu       sync.Mutex
	ops      map[string]fsnotify.Op
	overflow bool
	wake     chan struct{} // capacity 1
	held     map[devIno]heldFile
	fds      *fdPool // held files take descriptors from the source's pool
}

// heldFile is a new file opened by the event goroutine.
type heldFile struct {
	path string
	fd   *os.File
	st   fileStat
}

func newHints(fds *fdPool) *hints {
	return &hints{ops: map[string]fsnotify.Op{}, wake: make(chan struct{}, 1), held: map[devIno]heldFile{}, fds: fds}
}

// hold opens a newly created file that the source wants. Only regular
// files are opened (a FIFO's open would block this goroutine until a writer
// comes, and with it every event and shutdown).
func (h *hints) hold(path string) {
	if st, err := statPath(path); err != nil || !st.regular {
		return
	}
	if h.fds.acquire() != nil {
		return // no descriptor to spare: the loop finds the file by its event
	}
	fd, err := osOpen(path) // checks again: the path may have changed since
	if err != nil {
		h.fds.release()
		return
	}
	st, err := statFile(fd)
	if err != nil || !st.regular {
		_ = fd.Close()
		h.fds.release()
		return
	}
	h.mu.Lock()
	if _, dup := h.held[st.key]; dup {
		h.mu.Unlock()
		_ = fd.Close()
		h.fds.release()
		return
	}
	h.held[st.key] = heldFile{path: path, fd: fd, st: st}
	h.mu.Unlock()
}

// takeHeld hands the held files to the run loop.
func (h *hints) takeHeld() []heldFile {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.held) == 0 {
		return nil
	}
	out := make([]heldFile, 0, len(h.held))
	for k, hf := range h.held {
		out = append(out, hf)
		delete(h.held, k)
	}
	return out
}

// release closes what was never adopted (at the end of Run).
func (h *hints) release() {
	for _, hf := range h.takeHeld() {
		_ = hf.fd.Close()
		h.fds.release()
	}
}

func (h *hints) add(name string, op fsnotify.Op) {
	h.mu.Lock()
	if len(h.ops) >= maxHints {
		h.overflow = true
	} else {
		h.ops[name] |= op
	}
	h.mu.Unlock()
	h.poke()
}

func (h *hints) lost() {
	h.mu.Lock()
	h.overflow = true
	h.mu.Unlock()
	h.poke()
}

func (h *hints) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// take swaps the collected hints with spare (which must be empty) and
// returns them.
func (h *hints) take(spare map[string]fsnotify.Op) (map[string]fsnotify.Op, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ops, overflow := h.ops, h.overflow
	h.ops, h.overflow = spare, false
	return ops, overflow
}

// watcher watches directories with fsnotify and feeds hints. Its methods
// other than the event goroutine are called by the run loop only.
type watcher struct {
	w    *fsnotify.Watcher
	log  *slog.Logger
	dirs map[string]bool
	wg   sync.WaitGroup
}

// newFSWatcher starts an inotify instance; tests make it fail.
var newFSWatcher = fsnotify.NewWatcher

func newWatcher(h *hints, m *matcher, log *slog.Logger) (*watcher, error) {
	fw, err := newFSWatcher()
	if err != nil {
		return nil, err
	}
	w := &watcher{w: fw, log: log, dirs: map[string]bool{}}
	w.wg.Go(func() {
		for {
			select {
			case ev, ok := <-fw.Events:
				if !ok {
					return
				}
				if ev.Has(fsnotify.Create) && m.wanted(ev.Name) {
					h.hold(ev.Name)
				}
				h.add(ev.Name, ev.Op)
			case err, ok := <-fw.Errors:
				if !ok {
					return
				}
				if !errors.Is(err, fsnotify.ErrEventOverflow) {
					log.Warn("file events", "error", err)
				}
				h.lost()
			}
		}
	})
	return w, nil
}

// sync makes the watched set equal to dirs. It reports whether it added a
// watch: what changed in that directory before the watch existed is found by
// scanning again. A watch that cannot be added is reported to failed and
// tried again at the next sync.
func (w *watcher) sync(dirs map[string]bool, failed func(dir string, err error)) (added bool) {
	for d := range w.dirs {
		if !dirs[d] {
			_ = w.w.Remove(d) // may be gone already, with its watch
			delete(w.dirs, d)
		}
	}
	for d := range dirs {
		if w.dirs[d] {
			continue
		}
		if err := w.w.Add(d); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				failed(d, err)
			}
			continue
		}
		w.dirs[d] = true
		added = true
	}
	return added
}

func (w *watcher) close() {
	_ = w.w.Close()
	w.wg.Wait()
}
