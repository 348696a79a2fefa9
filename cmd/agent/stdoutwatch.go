package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// errReaderGone is the cause of agent tail's stop when nobody reads its
// stdout any more (`agent tail app.log | head -1`).
var errReaderGone = errors.New("the reader of stdout went away")

// readerGoneWriter is stdout for the stdout output. Once the reader is gone
// (a write failed with EPIPE, or watchReaderGone saw the pipe's read end
// close), it calls gone once, and later writes either pretend to succeed
// (discard: nothing is kept between runs anyway, and the shutdown must not
// wait on retries) or fail with a retryable error (the records stay in the
// spool of a --state-dir for the next run).
type readerGoneWriter struct {
	w       io.Writer
	discard bool
	gone    func()

	mu     sync.Mutex
	closed bool
	once   sync.Once
}

// errStdoutClosed is retryable for the stdout output (it is no EPIPE, which
// the output treats as permanent).
var errStdoutClosed = errors.New("stdout is closed")

func (p *readerGoneWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if !closed {
		n, err := p.w.Write(b)
		if err == nil || !errors.Is(err, syscall.EPIPE) {
			return n, err
		}
		p.markGone()
	}
	if p.discard {
		return len(b), nil
	}
	return 0, errStdoutClosed
}

func (p *readerGoneWriter) markGone() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.once.Do(p.gone)
}

// watchReaderGone calls gone when f's other end is closed while the agent
// is idle (no write to fail): poll(2) reports POLLERR on a pipe whose
// readers all left, POLLHUP on a hung-up terminal or a socket shut by its
// peer. It returns when ctx ends, and at once for what readerWatchable
// leaves out.
func watchReaderGone(ctx context.Context, f *os.File, gone func()) {
	fi, err := f.Stat()
	if err != nil || !readerWatchable(fi.Mode(), runtime.GOOS) {
		return
	}
	fd := int32(f.Fd())
	for ctx.Err() == nil {
		fds := []unix.PollFd{{Fd: fd}} // no events asked: only errors and hang-ups come back
		n, err := unix.Poll(fds, 200)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		if n > 0 && fds[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
			gone()
			return
		}
	}
}

// readerWatchable reports whether watchReaderGone polls a stdout of mode m
// on the system goos. Regular files have no reader to lose. macOS's poll(2)
// does not work on character devices (a terminal, /dev/null): it answers
// POLLNVAL at once, which would read as a hang-up and stop agent tail in
// its first second. There a terminal's hang-up is left to SIGHUP and a
// failed write.
func readerWatchable(m fs.FileMode, goos string) bool {
	if m.IsRegular() {
		return false
	}
	return goos != "darwin" || m&fs.ModeCharDevice == 0
}
