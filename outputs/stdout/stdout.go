// Package stdout is the output that prints user records to standard output
// (the default destination of `agent tail`): one line per user record, as a
// JSON object or the record's text (ndjson, see Config.Encoding) or as a
// kpl-json object that keeps its keys.
//
// Each Send writes its lines in chunks and returns once they are all written
// to the Writer, so nothing is buffered between Sends. A failed write fails
// the whole batch (lines already written are printed again on retry:
// at-least-once). A reader that went away (EPIPE, `agent tail | head`) is a
// permanent error wrapping syscall.EPIPE; a CLI that ignores SIGPIPE should
// stop on errors.Is(err, syscall.EPIPE). By default Go ends a program on
// SIGPIPE when writing to a closed stdout before Send ever sees it.
package stdout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"

	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/internal/encode"
)

// Format names (Config.Format).
const (
	FormatNDJSON  = encode.FormatNDJSON  // the record in its Encoding and "\n"
	FormatKPLJSON = encode.FormatKPLJSON // {"pk":..,"ehk":..,"data":base64} and "\n"
)

// Encoding names (Config.Encoding).
const (
	EncodingJSON = encode.EncodingNameJSON
	EncodingText = encode.EncodingNameText
)

// Config is the user configuration of a stdout output (outputs[].stdout).
type Config struct {
	// Format is ndjson (default) or kpl-json.
	Format string `yaml:"format"`
	// Encoding is how ndjson writes a record: json (default: one JSON
	// object per line, the record itself when it is a JSON object, else
	// {"message":"..."}) or text (the bytes as they are, a line break inside
	// a record written as \n). kpl-json ignores it.
	Encoding string `yaml:"encoding"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{Format: FormatNDJSON} }

// Validate checks c; "" stands for the default format.
func (c Config) Validate() error {
	if _, err := encode.ParseLineFormat(c.Format); err != nil {
		return fmt.Errorf("format: %w", err)
	}
	if _, err := encode.ParseEncoding(c.Encoding, encode.EncodingJSON); err != nil {
		return fmt.Errorf("encoding: %w", err)
	}
	return nil
}

// Settings are the values set in code.
type Settings struct {
	Logger *slog.Logger // unused for now; nil is fine
	Writer io.Writer    // default os.Stdout; never closed by the output
}

// Output writes batches to a Writer. Send is safe for concurrent use; the
// lines of one batch are never interleaved with another's.
type Output struct {
	name   string
	format encode.LineFormat
	enc    encode.Encoding

	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

var _ outputs.Output = (*Output)(nil)

// New returns a stdout output.
func New(name string, cfg Config, set Settings) (*Output, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("stdout: %w", err)
	}
	f, _ := encode.ParseLineFormat(cfg.Format)
	enc, _ := encode.ParseEncoding(cfg.Encoding, encode.EncodingJSON)
	w := set.Writer
	if w == nil {
		w = os.Stdout
	}
	return &Output{name: name, format: f, enc: enc, w: w}, nil
}

// Name returns the output's name.
func (o *Output) Name() string { return o.name }

// WritesRecords reports that every format writes user records one by one
// (outputs.RecordWriter).
func (o *Output) WritesRecords() bool { return true }

// Close does nothing (the Writer belongs to the caller).
func (o *Output) Close(context.Context) error { return nil }

const (
	// chunkSize is how much is encoded before a write.
	chunkSize = 64 << 10
	// maxKeep bounds the buffer kept between Sends (an oversized record can
	// grow it past chunkSize).
	maxKeep = 1 << 20
)

// Send writes every user record of b as a line.
func (o *Output) Send(ctx context.Context, b outputs.Batch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	buf := o.buf[:0]
	defer func() {
		if cap(buf) <= maxKeep {
			o.buf = buf[:0]
		}
	}()

	var bad []int
	var reasons []string
	var firstBad error
	for i := range b.Records {
		var err error
		buf, err = encode.AppendEncodedLines(buf, o.format, o.enc, &b.Records[i])
		if err != nil {
			err = fmt.Errorf("stdout: decode record %d of the batch: %w", i, err)
			bad, reasons = append(bad, i), append(reasons, err.Error())
			if firstBad == nil {
				firstBad = err
			}
		}
		if len(buf) >= chunkSize {
			if err := o.write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	if err := o.write(buf); err != nil {
		return err
	}
	return outputs.Rejected(bad, reasons, len(b.Records), firstBad)
}

func (o *Output) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if _, err := o.w.Write(p); err != nil {
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrClosed) {
			return outputs.Permanent(fmt.Errorf("stdout: the reader went away: %w", err))
		}
		return fmt.Errorf("stdout: write: %w", err)
	}
	return nil
}

// UsesPartitionKey: kpl-json writes each record's partition key ("pk");
// ndjson writes the records alone (outputs.KeyUser).
func (c *Config) UsesPartitionKey() (bool, string) {
	return c.UsesExplicitHashKey()
}

// UsesExplicitHashKey: kpl-json writes each record's explicit hash key
// ("ehk"); ndjson writes the records alone (outputs.HashKeyUser).
func (c *Config) UsesExplicitHashKey() (bool, string) {
	if c.Format == FormatKPLJSON {
		return true, ""
	}
	return false, "format " + FormatNDJSON
}
