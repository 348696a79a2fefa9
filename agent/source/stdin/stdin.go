// Package stdin is the source that reads records from a stream: standard
// input (`agent tail -`, `type: stdin`) or a named pipe. Each line is one
// record, its "\n" (or "\r\n") removed; a last line without a newline is
// delivered at the end of the stream (or at a read error that ends it).
// Lines longer than max_record_bytes are truncated, counted and logged at
// WARN (the limit, the line's size) at most once a minute.
//
// A stream cannot be read again: the source is no source.Committer, so the
// agent writes its records to the spool before they count as accepted (the
// spool path). Records still in the agent's memory when it is killed are
// lost with the pipe's own buffer; what the spool holds is delivered after a
// restart.
package stdin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	// Reader is the stream to read when Config.Path is empty; nil reads
	// os.Stdin.
	Reader io.Reader
}

// Stats are the source's counters since New.
type Stats struct {
	Records          uint64 // records emitted
	Bytes            uint64 // their data bytes
	TruncatedRecords uint64 // lines longer than max_record_bytes, truncated
	PartialLines     uint64 // last lines emitted without their newline (end of stream)
}

// Source reads one stream until its end. Run it once.
type Source struct {
	cfg    Config
	set    Settings
	log    *slog.Logger
	marker []byte

	records, bytes, truncated, partial atomic.Uint64

	// truncWarn: when a truncated line was last logged (Run's goroutine).
	truncWarn time.Time
}

// truncWarnEvery is how often a truncated line is logged at most: a stream
// of long lines would repeat it for each (the counter has every one).
const truncWarnEvery = time.Minute

// readBufferSize is one read from the stream; two such buffers are in use
// (one being read into while the other is parsed).
const readBufferSize = 256 << 10

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
		return nil, fmt.Errorf("stdin source %q: %w", set.Name, err)
	}
	if cfg.Path == "-" {
		cfg.Path = ""
	}
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{cfg: cfg, set: set, log: log, marker: []byte(cfg.TruncateMarker)}, nil
}

// Name returns the source's name.
func (s *Source) Name() string { return s.set.Name }

// Stats returns the counters; safe for concurrent use with Run.
func (s *Source) Stats() Stats {
	return Stats{Records: s.records.Load(), Bytes: s.bytes.Load(), TruncatedRecords: s.truncated.Load(), PartialLines: s.partial.Load()}
}

// Run reads the stream and emits one record per line until the stream ends
// (it returns nil) or ctx is done (nil too). A read error other than the
// end is returned.
//
// A read of standard input that the runtime cannot interrupt (a terminal, a
// pipe in blocking mode) may still be pending when Run returns on ctx's end;
// its goroutine ends with that read, or with the process. Named pipes and
// readers with SetReadDeadline are interrupted and waited for.
func (s *Source) Run(ctx context.Context, emit source.Emit) error {
	r, closeFn, err := s.open(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("stdin source %q: %w", s.set.Name, err)
	}
	defer closeFn()

	rd := startReader(r)
	defer rd.stop()
	sp := splitter{max: int(s.cfg.MaxRecordBytes), marker: s.marker, out: func(rec []byte, start, end int64, truncated bool) error {
		if truncated {
			s.truncated.Add(1)
			s.warnTruncated(len(rec), end-start)
		}
		if err := emit(ctx, source.Record{Data: rec, Cursor: source.Cursor{Start: start, Offset: end}}); err != nil {
			return err
		}
		s.records.Add(1)
		s.bytes.Add(uint64(len(rec)))
		return nil
	}}
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-rd.chunks:
			err := sp.feed(c.buf[:c.n])
			rd.free <- c.buf
			if err == nil && c.err != nil {
				// The end of the stream, or a read error that ends it: the
				// line begun was read and is delivered, counted partial.
				var flushed bool
				flushed, err = sp.end()
				if flushed {
					s.partial.Add(1)
				}
				if err == nil && c.err == io.EOF {
					s.log.Debug("end of stream", "records", s.records.Load(), "bytes", s.bytes.Load())
					return nil
				}
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err // emit's error: the agent stops the source
			}
			if c.err != nil {
				return fmt.Errorf("stdin source %q: read: %w", s.set.Name, c.err)
			}
		}
	}
}

// warnTruncated says that a line was cut to max_record_bytes, at most once
// a minute: only a counter said that the end of a record was lost, and
// `agent tail -` shows no metrics. lineBytes is the line as read, its
// newline included.
func (s *Source) warnTruncated(kept int, lineBytes int64) {
	now := time.Now()
	if !s.truncWarn.IsZero() && now.Sub(s.truncWarn) < truncWarnEvery {
		return
	}
	s.truncWarn = now
	stream := s.cfg.Path
	if stream == "" {
		stream = "-" // standard input
	}
	s.log.Warn("a line longer than max_record_bytes was truncated: the rest of the line is not sent",
		"stream", stream, "max_record_bytes", int64(s.cfg.MaxRecordBytes), "line_bytes", lineBytes, "kept_bytes", kept,
		"truncated_records", s.truncated.Load(),
		"hint", "raise max_record_bytes (agent tail --max-record-bytes; up to the output's record limit less 4KiB); logged at most once a minute, agent_stdin_truncated_records_total counts every one")
}

// open returns the stream to read and how to release it.
func (s *Source) open(ctx context.Context) (io.Reader, func(), error) {
	if s.cfg.Path == "" {
		if s.set.Reader != nil {
			return s.set.Reader, func() {}, nil
		}
		return os.Stdin, func() {}, nil
	}
	f, err := openFIFO(ctx, s.cfg.Path)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

// openFIFO opens path for reading. Opening a FIFO waits for a writer; when
// ctx ends first, the wait is ended by opening the FIFO for writing (which
// lets the pending open return) and the file is closed.
func openFIFO(ctx context.Context, path string) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	done := make(chan result, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_RDONLY, 0)
		done <- result{f, err}
	}()
	select {
	case r := <-done:
		return r.f, r.err
	case <-ctx.Done():
	}
	for {
		// O_NONBLOCK: fails (ENXIO) instead of waiting when no reader is
		// in open yet; try again until ours is.
		w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err == nil {
			w.Close()
		}
		select {
		case r := <-done:
			if r.f != nil {
				r.f.Close()
			}
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// chunk is one read: buf[:n] and the read's error.
type chunk struct {
	buf []byte
	n   int
	err error
}

// reader reads the stream in its own goroutine, so Run can return on ctx's
// end while a read blocks.
type reader struct {
	r      io.Reader
	chunks chan chunk
	free   chan []byte
	quit   chan struct{}
	done   chan struct{}
	once   sync.Once
}

func startReader(r io.Reader) *reader {
	rd := &reader{r: r, chunks: make(chan chunk), free: make(chan []byte, 2), quit: make(chan struct{}), done: make(chan struct{})}
	rd.free <- make([]byte, readBufferSize)
	rd.free <- make([]byte, readBufferSize)
	go rd.loop()
	return rd
}

func (rd *reader) loop() {
	defer close(rd.done)
	for {
		var buf []byte
		select {
		case buf = <-rd.free:
		case <-rd.quit:
			return
		}
		n, err := rd.r.Read(buf)
		if n == 0 && err == nil {
			rd.free <- buf
			continue
		}
		select {
		case rd.chunks <- chunk{buf: buf, n: n, err: err}:
		case <-rd.quit:
			return
		}
		if err != nil {
			return
		}
	}
}

// stop ends the reading goroutine: at once when it waits for Run, by a read
// deadline when the stream has them; otherwise it ends with its pending
// read.
func (rd *reader) stop() {
	rd.once.Do(func() { close(rd.quit) })
	d, ok := rd.r.(interface{ SetReadDeadline(time.Time) error })
	if ok && d.SetReadDeadline(time.Now()) == nil {
		<-rd.done
		return
	}
	select {
	case <-rd.done:
	default:
	}
}

// splitter cuts a stream into lines. A line that is complete inside one
// chunk is emitted from the chunk itself; a line spanning chunks is
// gathered in line, which keeps at most max+1 bytes (the extra byte may be
// the "\r" of a "\r\n").
type splitter struct {
	max    int
	marker []byte
	out    func(rec []byte, start, end int64, truncated bool) error

	line  []byte // the beginning of the current line
	over  bool   // bytes of the current line were skipped (longer than max+1)
	start int64  // stream offset of the current line
	pos   int64  // stream offset of the next byte fed
}

func (sp *splitter) feed(data []byte) error {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			sp.keep(data)
			sp.pos += int64(len(data))
			return nil
		}
		seg := data[:i]
		sp.pos += int64(i + 1)
		data = data[i+1:]
		var rec []byte
		if len(sp.line) == 0 && !sp.over {
			rec = seg
		} else {
			sp.keep(seg)
			rec = sp.line
		}
		if err := sp.emit(rec, true); err != nil {
			return err
		}
	}
	return nil
}

// keep appends p to the current line, up to max+1 bytes.
func (sp *splitter) keep(p []byte) {
	room := sp.max + 1 - len(sp.line)
	if len(p) > room {
		p = p[:room]
		sp.over = true
	}
	sp.line = append(sp.line, p...)
}

// end emits the last line of the stream if it had no newline; it reports
// whether there was one.
func (sp *splitter) end() (bool, error) {
	if len(sp.line) == 0 && !sp.over {
		return false, nil
	}
	return true, sp.emit(sp.line, false)
}

// emit sends one line (newline already removed) and starts the next.
func (sp *splitter) emit(rec []byte, newline bool) error {
	start := sp.start
	over := sp.over
	sp.start, sp.over = sp.pos, false
	defer func() { sp.line = sp.line[:0] }()
	if newline {
		if n := len(rec); n > 0 && rec[n-1] == '\r' && !over {
			rec = rec[:n-1]
		}
	}
	truncated := over || len(rec) > sp.max
	if truncated {
		keep := sp.max - len(sp.marker)
		rec = append(rec[:keep], sp.marker...)
	}
	return sp.out(rec, start, sp.pos, truncated)
}
