package socket

import (
	"bytes"
	"errors"
)

// Errors that end a stream connection. The records framed before them were
// delivered.
var (
	// errOversize: a record longer than max_record_bytes with on_oversize:
	// close.
	errOversize = errors.New("socket: record longer than max_record_bytes")
	// errMalformedFrame: an octet-counted stream whose frame header is not
	// "LEN SP" (LEN a decimal without leading zero). The stream cannot be
	// resynchronised: the connection is closed.
	errMalformedFrame = errors.New("socket: malformed octet-counting frame")
)

// maxFrameDigits bounds MSG-LEN: 10 digits are more than max_record_bytes
// can ever be (64 MiB).
const maxFrameDigits = 10

// frameFlags describe one framed record.
type frameFlags struct {
	truncated bool // longer than max: cut, marker appended
	// size is a truncated record's length as received, before the cut;
	// sizeAtLeast: a lower bound (a datagram the read cut).
	size        int
	sizeAtLeast bool
	partial     bool // the stream ended inside it (no newline, or a short frame)
	// stable: the record lies in the data passed to feed, so it stays
	// valid until feed returns (else it is the framer's own buffer,
	// reused for the next record).
	stable bool
}

// framer cuts a stream into records, by lines or by RFC 6587 octet
// counting. A record that is complete inside one fed chunk is handed out
// from the chunk itself; one spanning chunks is gathered in rec, which never
// holds more than max+1 bytes: memory per connection is bounded whatever
// the client sends.
type framer struct {
	octet     bool
	max       int
	marker    []byte
	closeOver bool // on_oversize: close (else truncate)
	out       func(rec []byte, fl frameFlags) error

	rec     []byte // the record gathered so far
	over    bool   // bytes of the current record were skipped
	skipped int    // how many

	// octet counting: the header being read, then the body's bytes still
	// to come.
	hdr    []byte
	inBody bool
	need   int

	// auto: line framing that also takes RFC 6587 octet-counted frames,
	// told apart per record as rsyslog does: a record that starts with a
	// digit 1-9 followed by more digits and a space is a frame ("LEN SP
	// MSG"); anything else (a syslog line starts with "<") is a line. Set
	// for format: syslog with framing: lines.
	auto      bool
	inHdr     bool // auto: reading what may be a frame header (in hdr)
	lastFrame bool // auto: the last record was a frame: a newline right after it ends it, not an empty line
}

func newFramer(octet bool, max int, marker []byte, closeOver bool, out func([]byte, frameFlags) error) *framer {
	return &framer{octet: octet, max: max, marker: marker, closeOver: closeOver, out: out, hdr: make([]byte, 0, maxFrameDigits)}
}

// feed frames data, a chunk of the stream. It returns out's error, or
// errOversize or errMalformedFrame (then the stream must stop).
func (f *framer) feed(data []byte) error {
	switch {
	case f.octet:
		return f.feedOctets(data)
	case f.auto:
		return f.feedAuto(data)
	}
	return f.feedLines(data)
}

// end is the end of the stream: a record begun and not finished is handed
// out, flagged partial. An octet frame header cut short is malformed.
func (f *framer) end() error {
	if f.inHdr {
		// Digits and no space: the start of a line.
		f.inHdr = false
		err := f.keep(f.hdr)
		f.hdr = f.hdr[:0]
		if err != nil {
			return err
		}
	}
	if f.octet && !f.inBody {
		if len(f.hdr) > 0 {
			f.hdr = f.hdr[:0]
			return errMalformedFrame
		}
		return nil
	}
	inBody := f.inBody
	f.inBody = false
	if len(f.rec) == 0 && !f.over {
		if inBody {
			return errMalformedFrame // a header, and not one byte of its message
		}
		return nil
	}
	return f.emit(f.rec, frameFlags{partial: true})
}

func (f *framer) feedLines(data []byte) error {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if err := f.keep(data); err != nil {
				return err
			}
			return nil
		}
		seg := data[:i]
		data = data[i+1:]
		var rec []byte
		stable := false
		if len(f.rec) == 0 && !f.over {
			rec, stable = seg, true
		} else {
			if err := f.keep(seg); err != nil {
				return err
			}
			rec = f.rec
		}
		if n := len(rec); n > 0 && rec[n-1] == '\r' && !f.over {
			rec = rec[:n-1]
		}
		if err := f.emit(rec, frameFlags{stable: stable}); err != nil {
			return err
		}
	}
	return nil
}

func (f *framer) feedOctets(data []byte) error {
	for len(data) > 0 {
		if !f.inBody {
			n, used, err := f.header(data)
			data = data[used:]
			if err != nil {
				return err
			}
			if n < 0 {
				return nil // the header continues in the next chunk
			}
			if n > f.max && f.closeOver {
				return errOversize
			}
			f.inBody, f.need = true, n
			continue
		}
		var err error
		if data, err = f.body(data); err != nil {
			return err
		}
	}
	return nil
}

// body takes the bytes of the current octet frame from data, emits the
// frame once complete, and returns the rest of data.
func (f *framer) body(data []byte) ([]byte, error) {
	take := min(f.need, len(data))
	body := data[:take]
	data = data[take:]
	f.need -= take
	if f.need == 0 && len(f.rec) == 0 && !f.over {
		f.inBody = false
		return data, f.emit(body, frameFlags{stable: true})
	}
	if err := f.keep(body); err != nil {
		return data, err
	}
	if f.need == 0 {
		f.inBody = false
		return data, f.emit(f.rec, frameFlags{})
	}
	return data, nil
}

// feedAuto frames lines and octet-counted frames mixed (auto).
func (f *framer) feedAuto(data []byte) error {
	for len(data) > 0 {
		switch {
		case f.inBody:
			var err error
			if data, err = f.body(data); err != nil {
				return err
			}
			f.lastFrame = !f.inBody
		case f.inHdr:
			c := data[0]
			switch {
			case c >= '0' && c <= '9' && len(f.hdr) < maxFrameDigits:
				f.hdr = append(f.hdr, c)
				data = data[1:]
			case c == ' ':
				data = data[1:]
				n := 0
				for _, d := range f.hdr {
					n = n*10 + int(d-'0')
				}
				f.hdr, f.inHdr = f.hdr[:0], false
				if n > f.max && f.closeOver {
					return errOversize
				}
				f.inBody, f.need = true, n
			default:
				// Not a frame header: its digits begin a line, which
				// goes on from here.
				f.inHdr = false
				err := f.keep(f.hdr)
				f.hdr = f.hdr[:0]
				if err != nil {
					return err
				}
			}
		case len(f.rec) == 0 && !f.over:
			// The start of a record.
			c := data[0]
			if f.lastFrame && (c == '\n' || c == '\r') {
				data = data[1:] // a newline after a frame ends it
				continue
			}
			f.lastFrame = false
			if c >= '1' && c <= '9' {
				f.inHdr = true
				continue
			}
			fallthrough
		default:
			// A line, to its newline.
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				return f.keep(data)
			}
			if err := f.feedLines(data[:i+1]); err != nil {
				return err
			}
			data = data[i+1:]
		}
	}
	return nil
}

// header reads the octet-counting header "LEN SP" from data, continuing one
// begun in an earlier chunk. It returns the frame length (-1 while the
// header is incomplete) and how many bytes of data it used. Newlines between
// frames (some senders end each frame with one) are skipped.
func (f *framer) header(data []byte) (n, used int, err error) {
	for used < len(data) {
		c := data[used]
		used++
		switch {
		case c >= '0' && c <= '9':
			if len(f.hdr) == 0 && c == '0' || len(f.hdr) == maxFrameDigits {
				f.hdr = f.hdr[:0]
				return 0, used, errMalformedFrame
			}
			f.hdr = append(f.hdr, c)
		case c == ' ' && len(f.hdr) > 0:
			n = 0
			for _, d := range f.hdr {
				n = n*10 + int(d-'0')
			}
			f.hdr = f.hdr[:0]
			return n, used, nil
		case (c == '\n' || c == '\r') && len(f.hdr) == 0:
		default:
			f.hdr = f.hdr[:0]
			return 0, used, errMalformedFrame
		}
	}
	return -1, used, nil
}

// keep appends p to the current record, up to max+1 bytes. With on_oversize:
// close, a record longer than max is an error at once.
func (f *framer) keep(p []byte) error {
	room := f.max + 1 - len(f.rec)
	if len(p) > room {
		if f.closeOver {
			f.reset()
			return errOversize
		}
		f.skipped += len(p) - room
		p = p[:room]
		f.over = true
	}
	f.rec = append(f.rec, p...)
	return nil
}

func (f *framer) reset() {
	f.rec = f.rec[:0]
	f.over, f.skipped = false, 0
}

// emit hands out one record (its terminator removed) and starts the next.
func (f *framer) emit(rec []byte, fl frameFlags) error {
	over := f.over
	defer f.reset()
	if over || len(rec) > f.max {
		if f.closeOver {
			return errOversize
		}
		fl.truncated, fl.stable, fl.size = true, false, len(rec)+f.skipped
		keep := f.max - len(f.marker)
		rec = append(rec[:keep:keep], f.marker...)
	}
	return f.out(rec, fl)
}

// splitOctetFrame reads one RFC 6587 octet-counted frame from the start of
// data: it returns the message and the bytes used (header, message, and
// newlines before the header), or consumed 0 when data holds no complete
// frame yet. It is the reference for the framer (and the fuzz target).
func splitOctetFrame(data []byte) (msg []byte, consumed int, err error) {
	i := 0
	for i < len(data) && (data[i] == '\n' || data[i] == '\r') {
		i++
	}
	start := i
	n := 0
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		if i == start && data[i] == '0' || i-start == maxFrameDigits {
			return nil, 0, errMalformedFrame
		}
		n = n*10 + int(data[i]-'0')
		i++
	}
	if i == len(data) {
		return nil, 0, nil
	}
	if i == start || data[i] != ' ' {
		return nil, 0, errMalformedFrame
	}
	i++
	if len(data)-i < n {
		return nil, 0, nil
	}
	return data[i : i+n], i + n, nil
}
