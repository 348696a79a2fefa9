package file

import "bytes"

// recordKind tells how a record came out of the splitter.
type recordKind uint8

const (
	kindLine      recordKind = iota // a whole line
	kindTruncated                   // an oversize line cut to max bytes (marker included)
	kindSplit                       // the first piece of an oversize line
	kindSplitMore                   // a later piece of an oversize line
)

// splitter cuts a file's bytes into records: one per line, "\n" or "\r\n"
// removed, bytes otherwise passed through as they are (invalid UTF-8 is
// data, not an error). A line longer than max is truncated (its first
// max-len(marker) bytes plus marker; the rest of the line is skipped) or
// split into pieces of max bytes.
//
// The caller keeps the bytes feed did not consume (an incomplete line of at
// most max+1 bytes: the extra byte may be the "\r" of a "\r\n") and passes
// them again in front of the next bytes. The splitter itself holds only the
// kept prefix of a line being truncated.
//
// A line whose beginning was flushed (emitted without its newline) goes on
// with the next bytes: what they add to it is the next record, but the
// newline that merely ends it ("\n", or "\r\n") makes no record: an empty
// record would be invented. A flushed line keeps a trailing "\r" (whether it
// is the first half of a "\r\n" is not known yet); a "\n" right after it
// ends that line the same way.
type splitter struct {
	max    int
	marker []byte
	split  bool
	out    func(rec []byte, start, end int64, kind recordKind) error

	discarding bool   // skipping the rest of a truncated line
	held       []byte // its kept prefix (room for the marker is added on emit)
	heldStart  int64
	splitting  bool // the current line already had a piece emitted
	cont       bool // the next byte continues a line whose beginning was emitted (flushed)
}

// reset forgets any line in progress (after a truncation of the file).
func (sp *splitter) reset() {
	sp.discarding, sp.splitting, sp.cont = false, false, false
	sp.held = sp.held[:0]
}

// busy reports whether the splitter holds part of a line.
func (sp *splitter) busy() bool { return sp.discarding }

// feed parses data, whose first byte is at file offset base, emits every
// record it completes and returns how many bytes it consumed. data may be
// modified (the truncation marker is written into it).
func (sp *splitter) feed(data []byte, base int64) (int, error) {
	i := 0
	if sp.cont {
		// The newline ending a flushed line is no line of its own.
		switch {
		case len(data) == 0:
			return 0, nil
		case data[0] == '\n':
			i = 1
		case data[0] == '\r':
			if len(data) == 1 {
				return 0, nil // "\r\n" or data: the next byte tells
			}
			if data[1] == '\n' {
				i = 2
			}
		}
		sp.cont = false
	}
	if sp.discarding {
		j := bytes.IndexByte(data, '\n')
		if j < 0 {
			return len(data), nil
		}
		i = j + 1
		if err := sp.emitHeld(base + int64(i)); err != nil {
			return i, err
		}
	}
	lim := sp.max
	for {
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			break
		}
		line := data[i : i+j]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		start, end := base+int64(i), base+int64(i+j+1)
		i += j + 1
		if err := sp.line(line, start, end); err != nil {
			return i, err
		}
	}
	// An incomplete line that can no longer fit, whatever follows.
	for rest := data[i:]; len(rest) > lim+1 || (len(rest) == lim+1 && rest[lim] != '\r'); rest = data[i:] {
		start := base + int64(i)
		if !sp.split {
			sp.held = append(sp.held[:0], rest[:lim-len(sp.marker)]...)
			sp.heldStart = start
			sp.discarding = true
			return len(data), nil
		}
		i += lim
		if err := sp.piece(rest[:lim], start, start+int64(lim)); err != nil {
			return i, err
		}
	}
	return i, nil
}

// flush emits rest, the incomplete last line that feed left (or the held
// prefix of a line being truncated), as a record ending at base+len(rest):
// the file stopped growing before the line's newline came.
func (sp *splitter) flush(rest []byte, base int64) error {
	end := base + int64(len(rest))
	if sp.discarding {
		sp.cont = true
		return sp.emitHeld(end)
	}
	if len(rest) == 0 {
		return nil
	}
	sp.cont = true
	return sp.line(rest, base, end)
}

// line emits a complete line (without its terminator).
func (sp *splitter) line(line []byte, start, end int64) error {
	lim := sp.max
	if len(line) <= lim {
		if sp.splitting {
			sp.splitting = false
			return sp.out(line, start, end, kindSplitMore)
		}
		return sp.out(line, start, end, kindLine)
	}
	if !sp.split {
		keep := lim - len(sp.marker)
		copy(line[keep:], sp.marker) // the rest of the line is skipped anyway
		return sp.out(line[:lim], start, end, kindTruncated)
	}
	for len(line) > lim {
		if err := sp.piece(line[:lim], start, start+int64(lim)); err != nil {
			return err
		}
		line, start = line[lim:], start+int64(lim)
	}
	sp.splitting = false
	return sp.out(line, start, end, kindSplitMore)
}

func (sp *splitter) piece(p []byte, start, end int64) error {
	kind := kindSplit
	if sp.splitting {
		kind = kindSplitMore
	}
	sp.splitting = true
	return sp.out(p, start, end, kind)
}

func (sp *splitter) emitHeld(end int64) error {
	sp.discarding = false
	sp.held = append(sp.held, sp.marker...)
	err := sp.out(sp.held, sp.heldStart, end, kindTruncated)
	sp.held = sp.held[:0]
	return err
}
