package process

import (
	"github.com/kplagent/agent/internal/jsontext"
)

// csvParser parses one CSV record (RFC 4180: fields may be quoted; inside
// quotes a doubled quote is a quote, and delimiters and line breaks are
// data) into fields named by names; values past the names are named _N
// (N counted from 1), names without a value are left out.
type csvParser struct {
	names []string
	delim byte
	quote byte
	vals  [][]byte
	buf   []byte

	opens  []string // `,"name":"` of each name (prepare)
	keys   []string // each name escaped
	unique bool     // the names are distinct
}

func (p *csvParser) parse(r *Record, line []byte) bool {
	// The line terminator is not data (a quoted field's line breaks are).
	for len(line) > 0 && (line[len(line)-1] == '\n' || line[len(line)-1] == '\r') {
		line = line[:len(line)-1]
	}
	p.vals = p.vals[:0]
	buf := p.buf[:0]
	type span struct{ s, e int }
	var spans [64]span
	sp := spans[:0]
	i := 0
	for {
		start := len(buf)
		if i < len(line) && line[i] == p.quote {
			i++
			closed := false
			for i < len(line) {
				c := line[i]
				if c == p.quote {
					if i+1 < len(line) && line[i+1] == p.quote {
						buf = append(buf, c)
						i += 2
						continue
					}
					closed = true
					i++
					break
				}
				buf = append(buf, c)
				i++
			}
			if !closed || (i < len(line) && line[i] != p.delim) {
				p.buf = buf
				return false
			}
		} else {
			for i < len(line) && line[i] != p.delim {
				if line[i] == p.quote {
					// A quote inside an unquoted field is not RFC 4180.
					p.buf = buf
					return false
				}
				buf = append(buf, line[i])
				i++
			}
		}
		sp = append(sp, span{start, len(buf)})
		if i >= len(line) {
			break
		}
		i++ // the delimiter
	}
	p.buf = buf
	r.startObject()
	if p.opens == nil {
		p.prepare()
	}
	for k, s := range sp {
		v := buf[s.s:s.e]
		switch {
		case k < len(p.names) && p.unique:
			// Distinct names: written straight into the output form.
			open := p.opens[k]
			if len(r.fields) == 0 {
				open = open[1:] // no comma before the first field
			}
			ks, ke := r.openStr(open, p.keys[k])
			r.arena = jsontext.AppendBody(r.arena, v)
			r.closeStr(ks, ke)
		case k < len(p.names):
			r.SetString(p.names[k], v)
		default:
			r.SetString(extraName(k+1), v)
		}
	}
	return true
}

// prepare computes the openers (`,"name":"`) of the named columns, and
// whether the names are distinct (repeated names are set one over the
// other, the last column winning; columns past the names, _N, are set
// over a column so named).
func (p *csvParser) prepare() {
	p.unique = true
	seen := map[string]bool{}
	p.opens = make([]string, len(p.names))
	p.keys = make([]string, len(p.names))
	for i, n := range p.names {
		k := string(appendKeyBody(nil, n))
		p.unique = p.unique && !seen[k]
		seen[k] = true
		p.keys[i] = k
		p.opens[i] = `,"` + k + `":"`
	}
}

var extraNames = func() (n [64]string) {
	for i := range n {
		n[i] = "_" + itoa(i)
	}
	return n
}()

func extraName(i int) string {
	if i < len(extraNames) {
		return extraNames[i]
	}
	return "_" + itoa(i)
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	return string(b[n:])
}
