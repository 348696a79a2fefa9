package journald

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The journal export format (journalctl --output=export): entries are
// separated by an empty line; each field is either a text line
// "NAME=value\n" or, for values that are not plain text, "NAME\n" followed
// by the value's length as a 64-bit little-endian integer, the value's bytes
// and "\n".

// errMalformed is wrapped by the reader's errors when the stream is not in
// the export format; the stream cannot be trusted after it.
var errMalformed = errors.New("journald: malformed export stream")

// maxNameBytes bounds a field name. journald's own limit is 64; a longer
// "name" means the stream is not what we think it is.
const maxNameBytes = 256

// field is one field of an entry. value is only valid until the next call
// of next.
type field struct {
	name  string
	value []byte
}

// entry is one journal entry as read.
type entry struct {
	fields []field
	// cursor is the __CURSOR field ("" if the entry had none).
	cursor string
	// truncated is set when values were cut (max_record_bytes) or fields
	// dropped (the entry exceeded what the reader keeps).
	truncated bool
	// size is the number of stream bytes the entry took.
	size int
}

// exportReader reads entries from an export stream with bounded memory: a
// value longer than maxValue is cut (the rest is read and discarded), and
// once an entry holds maxEntry bytes of names and values, its further fields
// are dropped. Either sets entry.truncated.
type exportReader struct {
	r        *bufio.Reader
	maxValue int
	maxEntry int

	ent   entry
	buf   []byte // the values of the current entry, back to back
	line  []byte
	spans []span
	kept  int // bytes of names and values kept in the current entry
}

type span struct{ start, end int }

func newExportReader(r io.Reader, maxValue, maxEntry int) *exportReader {
	return &exportReader{r: bufio.NewReaderSize(r, 64<<10), maxValue: maxValue, maxEntry: maxEntry}
}

// next reads the next entry. It returns io.EOF when the stream ends between
// entries, io.ErrUnexpectedEOF when it ends within one (the partial entry is
// not returned: it is read again from the previous cursor), and an error
// wrapping errMalformed when the stream is not in the export format. The
// entry and its values are valid until the next call.
func (p *exportReader) next() (*entry, error) {
	p.ent.fields = p.ent.fields[:0]
	p.ent.cursor = ""
	p.ent.truncated = false
	p.ent.size = 0
	p.buf = p.buf[:0]
	p.kept = 0
	spans := p.spans[:0] // where each field's value lies in p.buf (it may grow)
	names := p.ent.fields[:0]
	for {
		line, n, err := p.readLine()
		p.ent.size += n
		if err != nil {
			if err == io.EOF && len(names) == 0 && n == 0 {
				return nil, io.EOF
			}
			if err == io.EOF {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if len(line) == 0 {
			if len(names) == 0 {
				continue // blank lines between entries
			}
			break
		}
		var name []byte
		start := len(p.buf)
		if i := bytes.IndexByte(line, '='); i >= 0 {
			name = line[:i]
			if err := checkName(name); err != nil {
				return nil, err
			}
			v := line[i+1:]
			if len(v) > p.maxValue {
				v = v[:p.maxValue]
				p.ent.truncated = true
			}
			keep := p.keep(len(name), len(v))
			if keep < 0 {
				continue
			}
			p.buf = append(p.buf, v[:keep]...)
		} else {
			name = line
			if err := checkName(name); err != nil {
				return nil, err
			}
			var lb [8]byte
			if _, err := io.ReadFull(p.r, lb[:]); err != nil {
				return nil, eof(err)
			}
			p.ent.size += 8
			size := binary.LittleEndian.Uint64(lb[:])
			if size > 1<<62 {
				return nil, fmt.Errorf("%w: field %q has length %d", errMalformed, name, size)
			}
			// name is in p.line, which the reads below do not touch.
			keep := min(int64(size), int64(p.maxValue))
			if keep < int64(size) {
				p.ent.truncated = true
			}
			k := p.keep(len(name), int(keep))
			dropped := k < 0
			if dropped {
				k = 0
			}
			p.buf = append(p.buf, make([]byte, k)...)
			if _, err := io.ReadFull(p.r, p.buf[start:]); err != nil {
				return nil, eof(err)
			}
			if rest := int64(size) - int64(k); rest > 0 {
				if _, err := io.CopyN(io.Discard, p.r, rest); err != nil {
					return nil, eof(err)
				}
			}
			p.ent.size += int(size) + 1
			c, err := p.r.ReadByte()
			if err != nil {
				return nil, eof(err)
			}
			if c != '\n' {
				return nil, fmt.Errorf("%w: field %q: no newline after its %d bytes", errMalformed, name, size)
			}
			if dropped {
				continue
			}
		}
		names = append(names, field{name: string(name)})
		spans = append(spans, span{start, len(p.buf)})
	}
	for i := range names {
		names[i].value = p.buf[spans[i].start:spans[i].end:spans[i].end]
		if names[i].name == "__CURSOR" {
			p.ent.cursor = string(names[i].value)
		}
	}
	p.ent.fields = names
	p.spans = spans
	return &p.ent, nil
}

// keep accounts for a field of name and value bytes and returns how many
// value bytes to keep, or -1 to drop the field (the entry is full).
func (p *exportReader) keep(name, value int) int {
	if p.kept+name > p.maxEntry {
		p.ent.truncated = true
		return -1
	}
	p.kept += name
	if p.kept+value > p.maxEntry {
		value = p.maxEntry - p.kept
		p.ent.truncated = true
	}
	p.kept += value
	return value
}

// readLine reads one line without its "\n" into p.line, keeping at most
// maxValue+maxNameBytes+1 bytes of it (the rest of a longer line is
// discarded: a text value is cut to maxValue anyway). n counts the bytes
// consumed, newline included.
func (p *exportReader) readLine() ([]byte, int, error) {
	p.line = p.line[:0]
	limit := p.maxValue + maxNameBytes + 1
	n := 0
	for {
		chunk, err := p.r.ReadSlice('\n')
		n += len(chunk)
		if room := limit - len(p.line); room > 0 {
			p.line = append(p.line, chunk[:min(len(chunk), room)]...)
		}
		switch err {
		case nil:
			if len(p.line) == n { // the whole line was kept: drop its "\n"
				p.line = p.line[:n-1]
			}
			return p.line, n, nil
		case bufio.ErrBufferFull:
			continue
		default:
			return nil, n, err
		}
	}
}

// checkName accepts what journald accepts as a field name (upper-case
// letters, digits and "_"), plus lower-case letters (some writers use them;
// journalctl exports them as they are).
func checkName(name []byte) error {
	if len(name) == 0 || len(name) > maxNameBytes {
		return fmt.Errorf("%w: field name of %d bytes", errMalformed, len(name))
	}
	for _, c := range name {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("%w: field name %q", errMalformed, truncateForLog(name))
		}
	}
	return nil
}

func truncateForLog(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

func eof(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
