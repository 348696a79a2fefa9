package file

import (
	"errors"
	"io"
	"os"
	"time"

	"github.com/kplagent/agent/agent/source"
)

// readFD reads a followed file; tests make it fail.
var readFD = (*os.File).Read

// readAll gives every open file with data one turn.
func (r *runner) readAll() (bool, error) {
	progressed := false
	for i := 0; i < len(r.live); i++ {
		f := r.live[i]
		if f.fd == nil || !f.hot {
			continue
		}
		n, err := r.readTurn(f)
		if n > 0 {
			progressed = true
			r.now = time.Now() // emit may have blocked for long (backpressure)
		}
		if err != nil {
			return progressed, err
		}
		if r.ctx.Err() != nil {
			return progressed, nil
		}
	}
	return progressed, r.takeErr()
}

// readTurn reads up to turnBudget bytes of f and emits what they complete.
func (r *runner) readTurn(f *file) (int64, error) {
	buf := r.buf
	k := copy(buf, f.spill)
	base := f.offset - int64(k)
	var total int64
	eof := false
	var rerr, err error
	// Growth after the end was reached may follow a copytruncate: the file
	// cut to 0 and rewritten past our offset before we looked (emit may have
	// blocked meanwhile). Its first bytes tell: they are compared with the
	// fingerprint after the read (a truncation just before it is caught too)
	// and before the bytes are used. One pread of at most fingerprint_bytes,
	// only when a file that was at its end grows.
	verify := f.atEnd && f.fp.n > 0
	f.atEnd = false
	for total < turnBudget {
		var n int
		n, rerr = readFD(f.fd, buf[k:k+readChunk])
		if n > 0 && verify {
			verify = false
			if ok, err := f.fp.matches(f.fd, r.fpBuf); err == nil && !ok {
				// What was read is new content at the old offset: drop it
				// and read the file again from 0.
				r.truncated(f) // emits the old spill: buf[:k] was a copy
				k, base = 0, 0
				rerr = nil
				continue
			}
		}
		if n > 0 {
			total += int64(n)
			f.offset += int64(n)
			k += n
			var c int
			r.batching = r.batch != nil && r.s.ml == nil
			c, err = f.sp.feed(buf[:k], base)
			if r.batching {
				r.batching = false
				if ferr := r.flushBatch(); err == nil {
					err = ferr
				}
			}
			if c < k {
				copy(buf, buf[c:k])
			}
			base += int64(c)
			k -= c
			if err != nil {
				break
			}
		}
		if rerr != nil || n == 0 {
			eof = true
			f.atEnd = true
			break
		}
		if n < readChunk {
			f.atEnd = true
			break // probably the end: the next turn finds out
		}
	}
	f.spill = append(f.spill[:0], buf[:k]...)
	f.offsetA.Store(f.offset)
	if err != nil {
		return total, err // from emit: the source stops
	}
	readFailed := rerr != nil && !errors.Is(rerr, io.EOF)
	if total > 0 {
		f.lastGrowth = time.Now() // not r.now: emit may have blocked since
		f.turnBytes += total
		f.eof = false
		if f.fp.n < r.cfg.FingerprintBytes && f.offset > int64(f.fp.n) {
			f.size = max(f.size, f.offset)
			if !r.fingerprint(f) {
				return total, nil // truncated: read again from 0
			}
		}
	}
	if !eof {
		return total, nil
	}
	if readFailed {
		r.readFailed(f, rerr)
		return total, nil
	}
	f.hot = false
	f.eof, f.caughtUp = true, true
	f.size = max(f.size, f.offset)
	if total == 0 {
		if st, err := statFile(f.fd); err == nil {
			r.checkOpen(f, st, false)
		}
	}
	if r.s.set.Once && !f.hot {
		if err := r.flushPending(f); err != nil {
			return total, err
		}
	}
	return total, nil
}

// readFailed handles a read error (EIO, ESTALE...). A file followed at its
// path gives up its descriptor and is opened again at the next scan (a
// stale NFS handle needs a new open; the position is kept). A rotated file
// keeps its descriptor, the only way to its data, and is read again at the
// next poll.
func (r *runner) readFailed(f *file, err error) {
	f.hot = false
	f.eof, f.caughtUp = true, true
	if f.state != stOpen {
		r.c.readErrors++
		path := f.path
		if path == "" {
			path = f.lastPath
		}
		r.readLog.add(r.s.log, r.now, path, err)
		return
	}
	r.closeFD(f)
	r.failed(f, err, &r.readLog, &r.c.readErrors)
}

// record takes one record from a file's splitter.
func (r *runner) record(f *file, rec []byte, start, end int64, kind recordKind) error {
	switch kind {
	case kindTruncated:
		r.c.truncated++
		r.warnTruncated(f, len(rec), end-start)
		if r.batching {
			// Its bytes may be the splitter's held prefix, which the
			// same feed may reuse: it goes now, after what is pending.
			if err := r.flushBatch(); err != nil {
				return err
			}
			r.batching = false
			defer func() { r.batching = true }()
		}
	case kindSplit, kindSplitMore:
		r.c.split++
	}
	if ml := r.s.ml; ml != nil {
		return r.mlAdd(f, ml, rec, start, end, kind == kindSplitMore)
	}
	return r.send(f, rec, start, end)
}

// warnTruncated says that a line was cut to max_record_bytes, at most once
// a minute (a file of long lines would repeat it for each): only a counter
// said that the end of a record was lost. lineBytes is the line as it was
// in the file, its newline included.
func (r *runner) warnTruncated(f *file, kept int, lineBytes int64) {
	if !r.truncWarn.IsZero() && r.now.Sub(r.truncWarn) < errLogEvery {
		return
	}
	r.truncWarn = r.now
	path := f.path
	if path == "" {
		path = f.lastPath
	}
	r.s.log.Warn("a line longer than max_record_bytes was truncated: the rest of the line is not sent",
		"path", path, "max_record_bytes", int64(r.cfg.MaxRecordBytes), "line_bytes", lineBytes, "kept_bytes", kept,
		"truncated_records", r.s.truncatedRecords.Load()+r.c.truncated,
		"hint", "raise max_record_bytes (up to the output's record limit less 4KiB), or oversize: split sends the whole line as consecutive records; logged at most once a minute, agent_file_truncated_records_total counts every one")
}

func (r *runner) send(f *file, data []byte, start, end int64) error {
	r.c.records++
	r.c.bytes += uint64(len(data))
	path := f.path
	if path == "" {
		path = f.lastPath // renamed away (rotated) since it was found
	}
	rec := source.Record{Data: data, Path: path, Cursor: source.Cursor{FileID: f.inc.id, Start: start, Offset: end}}
	if r.batching {
		r.pending = append(r.pending, rec)
		if len(r.pending) >= maxBatch {
			return r.flushBatch()
		}
		return nil
	}
	return r.emit(r.ctx, rec)
}

// flushBatch hands the pending records downstream in one batch.
func (r *runner) flushBatch() error {
	if len(r.pending) == 0 {
		return nil
	}
	_, err := r.batch(r.ctx, r.pending)
	r.pending = r.pending[:0]
	return err
}

// mlAdd adds a line to f's multiline record, emitting the previous record
// when this line starts a new one.
func (r *runner) mlAdd(f *file, ml *mlRules, line []byte, start, end int64, cont bool) error {
	st := &f.ml
	join := st.lines > 0 && (cont || ml.joins(line))
	if join && (st.lines+1 > ml.maxLines || len(st.buf)+1+len(line) > ml.maxBytes) {
		join = false
	}
	if !join && st.lines > 0 {
		if err := r.mlFlush(f); err != nil {
			return err
		}
	}
	if st.lines == 0 {
		st.buf = append(st.buf[:0], line...)
		st.start = start
	} else {
		st.buf = append(st.buf, '\n')
		st.buf = append(st.buf, line...)
	}
	st.lines++
	st.end = end
	st.last = r.now
	return nil
}

func (r *runner) mlFlush(f *file) error {
	st := &f.ml
	if st.lines == 0 {
		return nil
	}
	st.lines = 0
	err := r.send(f, st.buf, st.start, st.end)
	if cap(st.buf) > mlShrinkAbove {
		st.buf = nil
	} else {
		st.buf = st.buf[:0]
	}
	return err
}

// flushPending emits what f holds: its incomplete last line and its
// multiline record.
func (r *runner) flushPending(f *file) error {
	if len(f.spill) > 0 || f.sp.busy() {
		r.c.partial++
		err := f.sp.flush(f.spill, f.offset-int64(len(f.spill)))
		f.spill = f.spill[:0]
		if err != nil {
			return err
		}
	}
	return r.mlFlush(f)
}

// deferErr keeps an emit error raised where it cannot be returned; the
// loop returns it at the end of the turn.
func (r *runner) deferErr(err error) {
	if err != nil && r.deferred == nil {
		r.deferred = err
	}
}

func (r *runner) takeErr() error {
	err := r.deferred
	r.deferred = nil
	return err
}
