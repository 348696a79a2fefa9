package socket

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kplagent/agent/agent/source"
)

// Settings are set in code, not in the config file.
type Settings struct {
	// Name is the source's name in logs and metrics. Required.
	Name   string
	Logger *slog.Logger // nil discards
	// Now is the clock RFC 3164 timestamps take their year from (nil:
	// time.Now).
	Now func() time.Time
}

// Drop reasons (agent_socket_dropped_records_total{reason}).
const (
	// DropSpoolFull: a datagram arrived while the datagram queue was full
	// (the flow was not taking records: spool full with when_full: block).
	DropSpoolFull = "spool_full"
	// DropOversize: a record longer than max_record_bytes with
	// on_oversize: close (the connection was closed).
	DropOversize = "oversize"
	// DropMalformedFrame: bytes after a malformed octet-counting header
	// (the connection was closed); or a frame header with no message.
	DropMalformedFrame = "malformed_frame"
	// DropShutdown: a record read while the agent stopped, which the flow
	// no longer took.
	DropShutdown = "shutdown"
	// DropEmitError: the flow refused the record (the source stops with
	// that error).
	DropEmitError = "emit_error"
	// DropEmpty: an empty record, which carries nothing: an empty line
	// ("\n" or "\r\n") of a line-framed stream, an empty datagram or one
	// that is only a newline (keepalives, `echo | nc`). Stream and
	// datagram sockets treat it alike; the file source, which mirrors
	// files, keeps empty lines.
	DropEmpty = "empty"
)

var dropReasons = []string{DropSpoolFull, DropOversize, DropMalformedFrame, DropShutdown, DropEmitError, DropEmpty}

// Stats are the source's counters since New.
type Stats struct {
	Connections        int64  // open now (stream sockets)
	ConnectionsTotal   uint64 // accepted
	RefusedConnections uint64 // beyond max_connections with on_max_connections: refuse
	IdleClosed         uint64 // closed by idle_timeout
	Records            uint64 // records emitted
	Bytes              uint64 // their data bytes (after formatting)
	ParseFailures      uint64 // format syslog/json: records passed on raw
	TruncatedRecords   uint64 // longer than max_record_bytes, truncated
	PartialRecords     uint64 // ended by the end of their connection (no newline, short frame)
	Dropped            map[string]uint64
}

// Source listens on one socket. Run it once.
type Source struct {
	cfg    Config
	set    Settings
	log    *slog.Logger
	addr   addr
	mode   uint32
	marker []byte
	now    func() time.Time

	conns                                                                atomic.Int64
	connsTotal, refused, idle, records, bytes, parseFail, trunc, partial atomic.Uint64
	dropped                                                              [6]atomic.Uint64 // by dropReasons index

	bound  atomic.Pointer[net.Addr] // the listening address, once listening
	bindMu sync.Mutex
	held   *bound        // what Bind took, until Run takes it or Release closes it
	ready  chan struct{} // closed once listening

	warnMu        sync.Mutex
	lastFrameWarn time.Time // a connection closed for its framing was last logged
	// lastTruncWarn: when a truncated record was last logged (UnixNano; a
	// CAS lets one connection log it).
	lastTruncWarn atomic.Int64
}

// readBufferSize is one read from a stream connection. It bounds, with
// max_record_bytes, what one connection holds.
const readBufferSize = 64 << 10

// maxDatagramBytes is the largest datagram read whole: UDP's 64 KiB, and a
// Unix datagram up to the default socket buffer limit (net.core.wmem_max,
// 208 KiB). A longer one is cut by the kernel; it counts as truncated.
const maxDatagramBytes = 256 << 10

// New checks cfg and prepares a source; nothing is opened until Run.
func New(cfg Config, set Settings) (*Source, error) {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if set.Name == "" {
		errs = append(errs, errors.New("name: required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	a, _ := parseListen(cfg.Listen)
	mode, _ := parseMode(cfg.Mode)
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := set.Now
	if now == nil {
		now = time.Now
	}
	return &Source{cfg: cfg, set: set, log: log, addr: a, mode: mode, marker: []byte(cfg.TruncateMarker), now: now, ready: make(chan struct{})}, nil
}

// Name returns the source's name.
func (s *Source) Name() string { return s.set.Name }

// Ready is closed once the source listens.
func (s *Source) Ready() <-chan struct{} { return s.ready }

// Addr is the address the source listens on (nil before Ready).
func (s *Source) Addr() net.Addr {
	if p := s.bound.Load(); p != nil {
		return *p
	}
	return nil
}

// Stats returns the counters; safe for concurrent use with Run.
func (s *Source) Stats() Stats {
	st := Stats{
		Connections: s.conns.Load(), ConnectionsTotal: s.connsTotal.Load(), RefusedConnections: s.refused.Load(),
		IdleClosed: s.idle.Load(), Records: s.records.Load(), Bytes: s.bytes.Load(), ParseFailures: s.parseFail.Load(),
		TruncatedRecords: s.trunc.Load(), PartialRecords: s.partial.Load(), Dropped: map[string]uint64{},
	}
	for i, r := range dropReasons {
		st.Dropped[r] = s.dropped[i].Load()
	}
	return st
}

func (s *Source) drop(reason string, n uint64) {
	for i, r := range dropReasons {
		if r == reason {
			s.dropped[i].Add(n)
			return
		}
	}
}

// Run listens and emits the records received until ctx is done; then it
// stops listening, ends the connections (a record they began is delivered,
// counted as partial), removes the socket file it created, and returns nil.
// It returns an error when it cannot listen, or when the flow refused a
// record for another reason than ctx's end.
func (s *Source) Run(ctx context.Context, emit source.Emit) error {
	return s.RunBatch(ctx, emit, nil)
}

// RunBatch is Run where a stream connection's records of one read, and the
// datagrams queued at once, go to batch together (nil: one by one to emit).
func (s *Source) RunBatch(ctx context.Context, emit source.Emit, batch source.EmitBatch) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var err error
	if s.addr.stream() {
		err = s.runStream(ctx, cancel, emit, batch)
	} else {
		err = s.runDatagram(ctx, cancel, emit, batch)
	}
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(cause, context.DeadlineExceeded) {
		return fmt.Errorf("socket: %w", cause)
	}
	return nil
}

// listening records the bound address and signals Ready.
func (s *Source) listening(a net.Addr) {
	s.bound.Store(&a)
	close(s.ready)
	s.log.Info("listening", "listen", s.addr.String(), "format", s.cfg.Format)
}

// prepareSocketFile makes room for a Unix socket at path: nothing there is
// fine; a socket that nobody listens on (left by a crash) is removed; a live
// socket or anything else (a regular file is never deleted) is an error.
func (s *Source) prepareSocketFile() error {
	path := s.addr.address
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket (%s); not removed", path, fi.Mode().Type())
	}
	c, err := net.DialTimeout(s.addr.network, path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: another process listens on this socket", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: cannot tell whether the socket is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	s.log.Info("removed a stale socket (nobody listened on it)", "path", path)
	return nil
}

// ownSocketFile sets the socket file's mode and group and returns its
// identity, so only that file is removed at the end (also when setting
// them failed).
func (s *Source) ownSocketFile() (os.FileInfo, error) {
	path := s.addr.address
	mine, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, fs.FileMode(s.mode)); err != nil {
		return mine, err
	}
	if s.cfg.Group != "" {
		gid, err := lookupGroup(s.cfg.Group)
		if err != nil {
			return mine, fmt.Errorf("group: %w", err)
		}
		if err := os.Lchown(path, -1, gid); err != nil {
			return mine, fmt.Errorf("group %q: %w", s.cfg.Group, err)
		}
	}
	return mine, nil
}

// removeSocketFile removes the socket file if it is still the one this
// source created.
func (s *Source) removeSocketFile(mine os.FileInfo) {
	if mine == nil {
		return
	}
	fi, err := os.Lstat(s.addr.address)
	if err != nil || !os.SameFile(fi, mine) {
		return
	}
	if err := os.Remove(s.addr.address); err != nil {
		s.log.Warn("removing the socket file", "path", s.addr.address, "error", err)
	}
}

// recordSink formats and emits the records of one connection (or of the
// datagram listener). It is used by one goroutine; the flow's emit is safe
// for concurrent use (it serialises on the flow's lock).
type recordSink struct {
	s      *Source
	ctx    context.Context
	cancel context.CancelCauseFunc
	emit   source.Emit
	// batch, when set, takes the records that stay valid until the read
	// they came from is done (frameFlags.stable, passed on as framed), in
	// pending, flushed by flushBatch (before the next read, and before any
	// record emitted on its own: order is kept).
	batch   source.EmitBatch
	pending []source.Record
	// arena holds the formatted (syslog JSON) records of pending, refs
	// says which: their Data is set from it at the flush (it may move
	// while it grows).
	arena   []byte
	refs    []arenaRef
	scratch []byte
	msg     syslogMsg
	// records and bytes emitted since the last flush: the source's
	// counters are updated once per read, not per record (two atomic adds
	// per record were a measurable part of a fast client's cost).
	records, bytes uint64
	// remote is the client's address ("" for datagrams).
	remote string
}

// flush adds what was emitted since the last flush to the source's counters.
func (k *recordSink) flush() {
	if k.records > 0 {
		k.s.records.Add(k.records)
		k.s.bytes.Add(k.bytes)
		k.records, k.bytes = 0, 0
	}
}

// errStop ends a connection because the flow no longer takes records.
var errStop = errors.New("socket: stopping")

// A batch is flushed at maxBatch records (a 64 KiB read of short lines is
// ~400) or maxArena bytes of formatted records.
const (
	maxBatch = 1024
	maxArena = 4 * readBufferSize
)

// arenaRef places pending[i]'s data in the arena.
type arenaRef struct{ i, start, end int }

// flushBatch emits the pending records. An error stops the connection
// (errStop), as in out; the records not taken are counted as dropped.
func (k *recordSink) flushBatch() error {
	if len(k.pending) == 0 {
		return nil
	}
	for _, r := range k.refs {
		k.pending[r.i].Data = k.arena[r.start:r.end]
	}
	n, err := k.batch(k.ctx, k.pending)
	for _, r := range k.pending[:n] {
		k.bytes += uint64(len(r.Data))
	}
	k.records += uint64(n)
	left := len(k.pending) - n
	clear(k.pending)
	k.pending, k.refs, k.arena = k.pending[:0], k.refs[:0], k.arena[:0]
	if cap(k.arena) > 2*maxArena {
		k.arena = nil // one huge record does not pin its buffer
	}
	if err != nil {
		return k.failed(err, left)
	}
	return nil
}

// failed counts n records the flow did not take and stops the connection.
func (k *recordSink) failed(err error, n int) error {
	if k.ctx.Err() != nil {
		k.s.drop(DropShutdown, uint64(n))
		return errStop
	}
	k.s.drop(DropEmitError, uint64(n))
	k.cancel(err) // the flow failed: the source stops with its error
	return errStop
}

func (k *recordSink) out(rec []byte, fl frameFlags) error {
	s := k.s
	if len(rec) == 0 {
		s.drop(DropEmpty, 1) // an empty line: nothing to deliver
		return nil
	}
	if fl.truncated {
		s.trunc.Add(1)
		s.warnTruncated(k.remote, len(rec), fl)
	}
	if fl.partial {
		s.partial.Add(1)
	}
	if k.batch != nil {
		start := len(k.arena)
		var formatted bool
		if formatted, k.arena = k.format(rec, fl, k.arena); formatted {
			k.refs = append(k.refs, arenaRef{len(k.pending), start, len(k.arena)})
			k.pending = append(k.pending, source.Record{})
		} else if fl.stable {
			k.pending = append(k.pending, source.Record{Data: rec})
		} else {
			// In the framer's buffer, which the next record reuses: on its
			// own, after what is pending.
			if err := k.flushBatch(); err != nil {
				return err
			}
			return k.emitOne(rec)
		}
		if len(k.pending) >= maxBatch || len(k.arena) >= maxArena {
			return k.flushBatch()
		}
		return nil
	}
	formatted, scratch := k.format(rec, fl, k.scratch[:0])
	k.scratch = scratch
	data := rec
	if formatted {
		data = scratch
	}
	err := k.emitOne(data)
	if cap(k.scratch) > 4*readBufferSize {
		k.scratch = nil // one huge record does not pin its buffer
	}
	return err
}

// truncWarnEvery is how often a truncated record is logged at most: a
// client of long records would repeat it for each (the counter has every
// one).
const truncWarnEvery = time.Minute

// warnTruncated says that a record was cut to max_record_bytes (on_oversize:
// truncate), at most once a minute: only a counter said that the end of a
// record was lost. kept is the record's length after the cut.
func (s *Source) warnTruncated(remote string, kept int, fl frameFlags) {
	now := time.Now().UnixNano()
	last := s.lastTruncWarn.Load()
	if last != 0 && now-last < int64(truncWarnEvery) || !s.lastTruncWarn.CompareAndSwap(last, now) {
		return
	}
	attrs := []any{"listen", s.cfg.Listen}
	if remote != "" {
		attrs = append(attrs, "remote", remote)
	}
	sizeKey := "record_bytes"
	if fl.sizeAtLeast {
		sizeKey = "record_bytes_at_least" // the kernel cut the datagram to the read buffer
	}
	attrs = append(attrs, "max_record_bytes", int64(s.cfg.MaxRecordBytes), sizeKey, fl.size, "kept_bytes", kept,
		"truncated_records", s.trunc.Load(),
		"hint", "raise max_record_bytes (up to the output's record limit less 4KiB), or on_oversize: close refuses such records; logged at most once a minute, agent_socket_truncated_records_total counts every one")
	s.log.Warn("a record longer than max_record_bytes was truncated: the rest of the record is not sent", attrs...)
}

// emitOne emits one record on its own.
func (k *recordSink) emitOne(data []byte) error {
	if err := k.emit(k.ctx, source.Record{Data: data}); err != nil {
		return k.failed(err, 1)
	}
	k.records++
	k.bytes += uint64(len(data))
	return nil
}

// format applies the source's format to rec: with syslog, a message that
// parses is appended to dst as JSON (formatted: the record is what was
// appended); otherwise the record is rec as it is (json only checks it).
// Parse failures are counted.
func (k *recordSink) format(rec []byte, fl frameFlags, dst []byte) (formatted bool, _ []byte) {
	s := k.s
	switch s.cfg.Format {
	case FormatSyslog:
		// Some senders end an octet-counted frame or a datagram with a
		// newline inside it: not part of the message (a truncated record's
		// marker is kept).
		msg := rec
		if n := len(msg); n > 0 && msg[n-1] == '\n' && !fl.truncated {
			msg = msg[:n-1]
			if n > 1 && msg[n-2] == '\r' {
				msg = msg[:n-2]
			}
		}
		if err := parseSyslog(msg, &k.msg, s.now()); err != nil {
			s.parseFail.Add(1)
			return false, dst
		}
		start := len(dst)
		dst = appendSyslogJSON(dst, &k.msg)
		if len(dst)-start > int(s.cfg.MaxRecordBytes) {
			// The JSON form (keys, escaping) does not fit where the
			// message did: pass the message on raw, counted.
			s.parseFail.Add(1)
			return false, dst[:start]
		}
		return true, dst
	case FormatJSON:
		if !json.Valid(rec) {
			s.parseFail.Add(1)
		}
	}
	return false, dst
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, readBufferSize); return &b }}
