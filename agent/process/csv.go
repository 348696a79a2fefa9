package process

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
	for k, s := range sp {
		v := buf[s.s:s.e]
		if k < len(p.names) {
			r.SetString(p.names[k], v)
			continue
		}
		r.SetString(extraName(k+1), v)
	}
	return true
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
