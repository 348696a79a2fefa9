// Package file is the output that appends user records as lines to a local
// file (`agent tail --to file:///dir`), with optional size-based rotation.
//
// Send returns after the batch is written and fsynced: the file is the
// destination, so a batch is acknowledged only once durable. A failed write is
// cut off again (the file is truncated to its size before the batch) and
// reported retryable, so the file holds whole batches. After a crash in the
// middle of a write the file may end with a partial line; the next write
// starts on a new line (the partial line is left, the batch is sent again).
package file

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/internal/encode"
)

// Settings are the values set in code.
type Settings struct {
	Logger *slog.Logger // already scoped to this output by the caller; nil: discard
}

// Output appends batches to a file. Send is safe for concurrent use.
type Output struct {
	name   string
	cfg    Config
	path   string
	format encode.LineFormat
	enc    encode.Encoding
	log    *slog.Logger
	now    func() time.Time // rotation names; tests replace it

	mu       sync.Mutex
	f        *os.File // nil after Close
	size     int64
	needsNL  bool // the file ends with a partial line
	buf      []byte
	closeErr error
	closed   bool
}

var _ outputs.Output = (*Output)(nil)

const (
	fileMode = 0o640 // records may be sensitive: no world access
	dirMode  = 0o750
	// maxKeep bounds the buffer kept between Sends.
	maxKeep = 8 << 20
	// backupTime names rotated files; it sorts in time order.
	backupTime = "20060102T150405.000000000Z"
)

// New validates cfg and opens (creating if needed) the file to append to.
func New(name string, cfg Config, set Settings) (*Output, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("file: %w", err)
	}
	f, _ := encode.ParseLineFormat(cfg.Format)
	enc, _ := encode.ParseEncoding(cfg.Encoding, encode.EncodingJSON)
	path := cfg.Path
	if path == "" {
		path = filepath.Join(cfg.Dir, name+".ndjson")
	}
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := &Output{name: name, cfg: cfg, path: path, format: f, enc: enc, log: log, now: time.Now}
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return nil, fmt.Errorf("file: %w", err)
	}
	if err := o.open(); err != nil {
		return nil, fmt.Errorf("file: %w", err)
	}
	return o, nil
}

// Name returns the output's name.
func (o *Output) Name() string { return o.name }

// WritesRecords reports that every format writes user records one by one
// (outputs.RecordWriter).
func (o *Output) WritesRecords() bool { return true }

// Path returns the file being appended to.
func (o *Output) Path() string { return o.path }

// open opens o.path for appending, syncing the directory when it creates it.
func (o *Output) open() error {
	_, statErr := os.Stat(o.path)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(o.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, fileMode)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	o.f, o.size, o.needsNL = f, fi.Size(), false
	if o.size > 0 {
		last := make([]byte, 1)
		r, err := os.Open(o.path)
		if err == nil {
			_, err = r.ReadAt(last, o.size-1)
			r.Close()
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("read the end of %s: %w", o.path, err)
		}
		if last[0] != '\n' {
			o.needsNL = true
			o.log.Warn("file ends with a partial line; appending after a line break", "path", o.path)
		}
	}
	if created {
		if err := syncDir(filepath.Dir(o.path)); err != nil {
			f.Close()
			return err
		}
	}
	return nil
}

// Close closes the file. It is idempotent; Send fails after it.
func (o *Output) Close(context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.closed {
		o.closed = true
		if o.f != nil {
			o.closeErr = o.f.Close()
			o.f = nil
		}
	}
	return o.closeErr
}

var errClosed = errors.New("file: output closed")

// Send appends every user record of b as a line and fsyncs the file.
func (o *Output) Send(ctx context.Context, b outputs.Batch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return errClosed
	}
	if o.f == nil { // a failed rotation could not reopen it
		if err := o.open(); err != nil {
			return fmt.Errorf("file: reopen: %w", err)
		}
	}
	buf := o.buf[:0]
	defer func() {
		if cap(buf) <= maxKeep {
			o.buf = buf[:0]
		}
	}()
	if o.needsNL {
		buf = append(buf, '\n')
	}
	start := len(buf)
	var bad []int
	var reasons []string
	var firstBad error
	for i := range b.Records {
		var err error
		if buf, err = encode.AppendEncodedLines(buf, o.format, o.enc, &b.Records[i]); err != nil {
			err = fmt.Errorf("file: decode record %d of the batch: %w", i, err)
			bad, reasons = append(bad, i), append(reasons, err.Error())
			if firstBad == nil {
				firstBad = err
			}
		}
	}
	if len(buf) > start {
		if err := o.rotateIfNeeded(int64(len(buf) - start)); err != nil {
			return err
		}
		if o.size == 0 {
			buf = buf[start:] // a fresh file needs no line break
		}
		if err := o.append(buf); err != nil {
			return err
		}
	}
	return outputs.Rejected(bad, reasons, len(b.Records), firstBad)
}

// append writes p and syncs; on failure it cuts the file back.
func (o *Output) append(p []byte) error {
	n, err := o.f.Write(p)
	if err == nil {
		if err = o.f.Sync(); err != nil {
			// What reached the disk is unknown: keep it (at worst the retry
			// duplicates it) and account for it.
			o.size += int64(n)
			o.needsNL = false
			return fmt.Errorf("file: fsync %s: %w", o.path, err)
		}
		o.size += int64(n)
		o.needsNL = false
		return nil
	}
	if n > 0 {
		if terr := o.f.Truncate(o.size); terr != nil {
			o.log.Error("cannot cut a failed write back", "path", o.path, "error", terr)
			o.size += int64(n)
			o.needsNL = p[n-1] != '\n'
		}
	}
	return fmt.Errorf("file: write %s: %w", o.path, err)
}

// rotateIfNeeded starts a new file when adding n bytes would pass the limit.
func (o *Output) rotateIfNeeded(n int64) error {
	limit := int64(o.cfg.MaxFileBytes)
	if limit <= 0 || o.size == 0 || o.size+n <= limit {
		return nil
	}
	ext := filepath.Ext(o.path)
	stem := strings.TrimSuffix(o.path, ext)
	backup := stem + "-" + o.now().UTC().Format(backupTime) + ext
	for i := 1; ; i++ { // two rotations in one nanosecond: unlikely, harmless
		if _, err := os.Lstat(backup); errors.Is(err, os.ErrNotExist) {
			break
		}
		backup = fmt.Sprintf("%s-%s-%d%s", stem, o.now().UTC().Format(backupTime), i, ext)
	}
	if err := o.f.Close(); err != nil {
		o.log.Warn("close before rotation", "path", o.path, "error", err)
	}
	o.f = nil
	if err := os.Rename(o.path, backup); err != nil {
		if oerr := o.open(); oerr != nil {
			return fmt.Errorf("file: rotate %s: %w (and reopen: %v)", o.path, err, oerr)
		}
		return fmt.Errorf("file: rotate %s: %w", o.path, err)
	}
	if err := o.open(); err != nil {
		return fmt.Errorf("file: rotate %s: %w", o.path, err)
	}
	o.log.Info("rotated", "path", o.path, "backup", backup)
	if o.cfg.MaxBackups > 0 {
		o.prune(stem, ext)
	}
	return nil
}

// prune deletes the oldest rotated files beyond MaxBackups.
func (o *Output) prune(stem, ext string) {
	matches, err := filepath.Glob(globEscape(stem) + "-*" + globEscape(ext))
	if err != nil {
		return
	}
	var backups []string
	for _, m := range matches {
		ts := strings.TrimSuffix(strings.TrimPrefix(m, stem+"-"), ext)
		if i := strings.LastIndexByte(ts, '-'); i > 0 && strings.HasSuffix(ts[:i], "Z") {
			ts = ts[:i] // collision suffix
		}
		if _, err := time.Parse(backupTime, ts); err == nil {
			backups = append(backups, m)
		}
	}
	sort.Strings(backups)
	for len(backups) > o.cfg.MaxBackups {
		if err := os.Remove(backups[0]); err != nil {
			o.log.Warn("cannot delete an old rotated file", "path", backups[0], "error", err)
		}
		backups = backups[1:]
	}
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
