package socket

import (
	"bytes"
	"errors"
	"time"

	"github.com/kplagent/agent/internal/jsontext"
)

// The syslog parsers are written by hand: one pass over the message, no
// regular expression, no allocation (the fields are slices of the input).
// A message that does not parse is passed on unchanged by the caller and
// counted.

var errSyslog = errors.New("socket: not a syslog message")

// syslogMsg is a parsed message. Absent fields are nil; the fields are
// slices of the input, valid as long as it is.
type syslogMsg struct {
	facility, severity int
	// timestamp as RFC 3339 text: RFC 5424's as sent; RFC 3164's made from
	// "Mmm dd hh:mm:ss" in ts (the year and zone guessed from the clock).
	timestamp []byte
	ts        [40]byte
	host      []byte
	app       []byte
	procid    []byte
	msgid     []byte
	sd        []byte // RFC 5424 STRUCTURED-DATA, validated, as sent
	msg       []byte
}

var facilityNames = [24]string{
	"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
	"uucp", "cron", "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
	"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
}

var severityNames = [8]string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// parsePRI reads "<PRI>" (PRI 0..191, no leading zero but "<0>").
func parsePRI(b []byte) (pri, n int, ok bool) {
	if len(b) < 3 || b[0] != '<' {
		return 0, 0, false
	}
	i := 1
	for i < len(b) && i <= 4 && b[i] >= '0' && b[i] <= '9' {
		pri = pri*10 + int(b[i]-'0')
		i++
	}
	digits := i - 1
	if digits == 0 || digits > 3 || i >= len(b) || b[i] != '>' || pri > 191 || digits > 1 && b[1] == '0' {
		return 0, 0, false
	}
	return pri, i + 1, true
}

// parseSyslog parses RFC 5424 ("<PRI>1 ...") or else RFC 3164.
func parseSyslog(b []byte, m *syslogMsg, now time.Time) error {
	if _, n, ok := parsePRI(b); ok && len(b) > n+1 && b[n] == '1' && b[n+1] == ' ' {
		return parseRFC5424(b, m)
	}
	return parseRFC3164(b, m, now)
}

// parseRFC5424 parses
//
//	<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [SP MSG]
//
// where each header field is printable ASCII or "-" (nil). A UTF-8 BOM
// starting MSG is removed.
func parseRFC5424(b []byte, m *syslogMsg) error {
	*m = syslogMsg{}
	pri, i, ok := parsePRI(b)
	if !ok || len(b) < i+2 || b[i] != '1' || b[i+1] != ' ' {
		return errSyslog
	}
	m.facility, m.severity = pri>>3, pri&7
	i += 2
	var f []byte
	if f, i, ok = field(b, i); !ok {
		return errSyslog
	}
	if f != nil {
		if !validTimestamp5424(f) {
			return errSyslog
		}
		m.timestamp = f
	}
	for _, dst := range []*[]byte{&m.host, &m.app, &m.procid, &m.msgid} {
		if *dst, i, ok = field(b, i); !ok {
			return errSyslog
		}
	}
	if i >= len(b) {
		return errSyslog
	}
	if b[i] == '-' {
		i++
	} else {
		n, ok := scanSD(b[i:])
		if !ok {
			return errSyslog
		}
		m.sd = b[i : i+n]
		i += n
	}
	if i < len(b) {
		if b[i] != ' ' {
			return errSyslog
		}
		m.msg = bytes.TrimPrefix(b[i+1:], []byte("\xef\xbb\xbf"))
	}
	return nil
}

// field reads a header field of printable ASCII ending with SP; "-" is nil.
func field(b []byte, i int) ([]byte, int, bool) {
	start := i
	for i < len(b) && b[i] > ' ' && b[i] < 0x7f {
		i++
	}
	if i == start || i >= len(b) || b[i] != ' ' {
		return nil, 0, false
	}
	f := b[start:i]
	if len(f) == 1 && f[0] == '-' {
		f = nil
	}
	return f, i + 1, true
}

// validTimestamp5424 checks YYYY-MM-DDThh:mm:ss[.1-6 digits](Z|±hh:mm),
// each number in its range (month 01-12, day 01-31, hour 00-23, minute
// 00-59, second 00-60): "2003-13-45T99:14:15Z" passed on as a timestamp
// broke consumers that parse it.
func validTimestamp5424(t []byte) bool {
	if len(t) < 20 {
		return false
	}
	digits := func(s []byte) bool {
		for _, c := range s {
			if c < '0' || c > '9' {
				return false
			}
		}
		return true
	}
	if !digits(t[0:4]) || t[4] != '-' || !digits(t[5:7]) || t[7] != '-' || !digits(t[8:10]) ||
		(t[10] != 'T' && t[10] != 't') || !digits(t[11:13]) || t[13] != ':' || !digits(t[14:16]) || t[16] != ':' || !digits(t[17:19]) {
		return false
	}
	num := func(s []byte) int { return int(s[0]-'0')*10 + int(s[1]-'0') }
	if mo, d := num(t[5:7]), num(t[8:10]); mo < 1 || mo > 12 || d < 1 || d > 31 || num(t[11:13]) > 23 || num(t[14:16]) > 59 || num(t[17:19]) > 60 {
		return false
	}
	i := 19
	if t[i] == '.' {
		j := i + 1
		for j < len(t) && t[j] >= '0' && t[j] <= '9' {
			j++
		}
		if j == i+1 || j-i-1 > 9 || j >= len(t) {
			return false
		}
		i = j
	}
	switch rest := t[i:]; {
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
		return true
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && digits(rest[1:3]) && rest[3] == ':' && digits(rest[4:6]):
		return num(rest[1:3]) <= 23 && num(rest[4:6]) <= 59
	}
	return false
}

// scanSD checks STRUCTURED-DATA: one or more
// [SD-ID *(SP PARAM-NAME="PARAM-VALUE")] (values escape ", \ and ]). It
// returns its length.
func scanSD(b []byte) (int, bool) {
	i := 0
	for i < len(b) && b[i] == '[' {
		i++
		if n := sdName(b[i:]); n == 0 {
			return 0, false
		} else {
			i += n
		}
		for i < len(b) && b[i] == ' ' {
			i++
			n := sdName(b[i:])
			if n == 0 {
				return 0, false
			}
			i += n
			if i+1 >= len(b) || b[i] != '=' || b[i+1] != '"' {
				return 0, false
			}
			i += 2
			for i < len(b) && b[i] != '"' {
				if b[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(b) {
				return 0, false
			}
			i++ // the closing quote
		}
		if i >= len(b) || b[i] != ']' {
			return 0, false
		}
		i++
	}
	return i, i > 0
}

// sdName is the length of an SD-NAME: printable ASCII but =, SP, ], ".
func sdName(b []byte) int {
	i := 0
	for i < len(b) && i < 32 && b[i] > ' ' && b[i] < 0x7f && b[i] != '=' && b[i] != ']' && b[i] != '"' {
		i++
	}
	return i
}

var months = [12]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// parseRFC3164 parses the BSD format
//
//	<PRI>Mmm dd hh:mm:ss [HOSTNAME ]TAG[[PID]]: MSG
//
// as syslog(3) and most daemons write it (the hostname is absent on the
// local socket; the timestamp may also be RFC 3339). The year and zone of
// "Mmm dd hh:mm:ss" are now's, the year before when that date would be more
// than a week ahead of now. A message without a tag is all MSG.
func parseRFC3164(b []byte, m *syslogMsg, now time.Time) error {
	*m = syslogMsg{}
	pri, i, ok := parsePRI(b)
	if !ok {
		return errSyslog
	}
	m.facility, m.severity = pri>>3, pri&7
	if n := bsdTimestamp(b[i:], m, now); n > 0 {
		i += n
	} else if f, j, ok := field(b, i); ok && f != nil && validTimestamp5424(f) {
		m.timestamp = f
		i = j
	} else {
		return errSyslog
	}
	rest := b[i:]
	// [HOSTNAME SP] TAG: the first word is the tag when it ends with ':'
	// or '['.
	w := wordEnd(rest)
	if w < len(rest) && rest[w] == ' ' && w > 0 {
		w2 := wordEnd(rest[w+1:])
		if nxt := rest[w+1:]; w2 < len(nxt) && (nxt[w2] == ':' || nxt[w2] == '[') && w2 > 0 {
			m.host = rest[:w]
			rest = nxt
		} else if w2 == len(nxt) || nxt[w2] == ' ' {
			// HOSTNAME MSG, no tag
			m.host = rest[:w]
			m.msg = nxt
			return nil
		}
	}
	w = wordEnd(rest)
	if w == 0 || w == len(rest) || rest[w] == ' ' {
		m.msg = rest
		return nil
	}
	m.app = rest[:w]
	j := w
	if rest[j] == '[' {
		k := bytes.IndexByte(rest[j:], ']')
		if k < 0 {
			m.app = nil
			m.msg = rest
			return nil
		}
		m.procid = rest[j+1 : j+k]
		j += k + 1
	}
	if j < len(rest) && rest[j] == ':' {
		j++
	}
	if j < len(rest) && rest[j] == ' ' {
		j++
	}
	m.msg = rest[j:]
	return nil
}

// wordEnd is the index of the first SP, ':' or '[' in b (len(b) if none).
func wordEnd(b []byte) int {
	for i, c := range b {
		if c == ' ' || c == ':' || c == '[' {
			return i
		}
	}
	return len(b)
}

// bsdTimestamp reads "Mmm dd hh:mm:ss " (dd may be " 6" or "06") into
// m.timestamp; it returns the bytes used, 0 if b does not start with one.
func bsdTimestamp(b []byte, m *syslogMsg, now time.Time) int {
	if len(b) < 16 || b[3] != ' ' || b[6] != ' ' || b[9] != ':' || b[12] != ':' || b[15] != ' ' {
		return 0
	}
	mon := -1
	for k, name := range months {
		if string(b[:3]) == name {
			mon = k
			break
		}
	}
	num := func(hi, lo byte) int {
		if hi == ' ' {
			hi = '0'
		}
		if hi < '0' || hi > '9' || lo < '0' || lo > '9' {
			return -1
		}
		return int(hi-'0')*10 + int(lo-'0')
	}
	day, hh, mm, ss := num(b[4], b[5]), num(b[7], b[8]), num(b[10], b[11]), num(b[13], b[14])
	if mon < 0 || day < 1 || day > 31 || hh < 0 || hh > 23 || mm < 0 || mm > 59 || ss < 0 || ss > 60 || b[7] == ' ' || b[10] == ' ' || b[13] == ' ' {
		return 0
	}
	t := time.Date(now.Year(), time.Month(mon+1), day, hh, mm, ss, 0, now.Location())
	if t.Sub(now) > 7*24*time.Hour {
		t = time.Date(now.Year()-1, time.Month(mon+1), day, hh, mm, ss, 0, now.Location())
	}
	if t.Day() != day {
		// Feb 29 of a year without one, Apr 31: time.Date would make it
		// another day (Mar 1) that the sender never wrote.
		return 0
	}
	m.timestamp = t.AppendFormat(m.ts[:0], time.RFC3339)
	return 16
}

// appendSyslogJSON writes m as one JSON object:
//
//	{"timestamp":"…","host":"…","app":"…","procid":"…","msgid":"…",
//	 "facility":"user","severity":"notice",
//	 "structured_data":{"id@1":{"name":"value"}},"message":"…"}
//
// Absent fields are left out; facility and severity are always there.
func appendSyslogJSON(dst []byte, m *syslogMsg) []byte {
	dst = append(dst, '{')
	str := func(key string, v []byte) {
		if v == nil {
			return
		}
		dst = append(dst, '"')
		dst = append(dst, key...)
		dst = append(dst, `":`...)
		dst = jsontext.AppendString(dst, v)
		dst = append(dst, ',')
	}
	str("timestamp", m.timestamp)
	str("host", m.host)
	str("app", m.app)
	str("procid", m.procid)
	str("msgid", m.msgid)
	dst = append(dst, `"facility":"`...)
	dst = append(dst, facilityNames[m.facility]...)
	dst = append(dst, `","severity":"`...)
	dst = append(dst, severityNames[m.severity]...)
	dst = append(dst, '"')
	if m.sd != nil {
		dst = append(dst, `,"structured_data":`...)
		dst = appendSDJSON(dst, m.sd)
	}
	if m.msg != nil {
		dst = append(dst, `,"message":`...)
		dst = jsontext.AppendString(dst, m.msg)
	}
	return append(dst, '}')
}

// appendSDJSON writes STRUCTURED-DATA (checked by scanSD) as an object of
// objects, the parameter values unescaped.
func appendSDJSON(dst []byte, sd []byte) []byte {
	dst = append(dst, '{')
	i := 0
	for i < len(sd) && sd[i] == '[' {
		if i > 0 {
			dst = append(dst, ',')
		}
		i++
		n := sdName(sd[i:])
		dst = jsontext.AppendString(dst, sd[i:i+n])
		dst = append(dst, ":{"...)
		i += n
		first := true
		for sd[i] == ' ' {
			i++
			n := sdName(sd[i:])
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = jsontext.AppendString(dst, sd[i:i+n])
			dst = append(dst, ':', '"')
			i += n + 2
			start := i
			for sd[i] != '"' {
				if sd[i] == '\\' && (sd[i+1] == '"' || sd[i+1] == '\\' || sd[i+1] == ']') {
					dst = jsontext.AppendBody(dst, sd[start:i])
					i++
					start = i
				} else if sd[i] == '\\' {
					i++ // a backslash before anything else is itself
				}
				i++
			}
			dst = jsontext.AppendBody(dst, sd[start:i])
			dst = append(dst, '"')
			i++
		}
		dst = append(dst, '}')
		i++ // ']'
	}
	return append(dst, '}')
}
