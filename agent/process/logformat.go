package process

import (
	"bytes"
	"strconv"

	"github.com/kplagent/agent/internal/jsontext"
)

// Log formats of log_to_json. The field names are the Kinesis Agent's
// LOGTOJSON names, so its users' consumers keep working.
const (
	FormatApacheCommon   = "apache_common"   // %h %l %u %t "%r" %>s %b
	FormatApacheCombined = "apache_combined" // common + "%{Referer}i" "%{User-agent}i"
	FormatNginxCombined  = "nginx_combined"  // nginx's default log_format combined
	FormatSyslog3164     = "syslog_rfc3164"  // BSD syslog: <PRI>Mmm dd hh:mm:ss host tag[pid]: msg
	FormatSyslog5424     = "syslog_rfc5424"  // <PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG
	FormatApacheError    = "apache_error"    // httpd 2.4 and 2.2 error log: [time] [module:level] [pid N:tid M] [client A] msg
)

// logFormats are the names log_to_json accepts.
var logFormats = []string{FormatApacheCommon, FormatApacheCombined, FormatNginxCombined, FormatApacheError, FormatSyslog3164, FormatSyslog5424}

// logParser parses a line into r's fields; false leaves r unchanged.
type logParser func(r *Record, line []byte) bool

func logParserFor(format string) logParser {
	switch format {
	case FormatApacheCommon:
		return func(r *Record, line []byte) bool { return parseAccess(r, line, false) }
	case FormatApacheCombined, FormatNginxCombined:
		return func(r *Record, line []byte) bool { return parseAccess(r, line, true) }
	case FormatSyslog3164:
		return parse3164
	case FormatSyslog5424:
		return parse5424
	case FormatApacheError:
		return parseApacheError
	}
	return nil
}

// token returns the bytes of b up to the next space and the rest after it.
func token(b []byte) (tok, rest []byte, ok bool) {
	i := bytes.IndexByte(b, ' ')
	if i <= 0 {
		return nil, nil, false
	}
	return b[:i], b[i+1:], true
}

// quoted returns the contents of the double-quoted string at the start of
// b (backslash escapes kept as they are) and the rest after it.
func quoted(b []byte) (q, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, nil, false
	}
	for i := 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return b[1:i], b[i+1:], true
		}
	}
	return nil, nil, false
}

// accessKeys are the fields of an access log line, in output order.
var accessKeys = [...]string{"host", "ident", "authuser", "datetime", "request", "response", "bytes", "referer", "agent"}

// accessOpen[i] opens field i in the output form: `"host":"` for the
// first, `,"ident":"` for the others.
var accessOpen = func() (o [len(accessKeys)]string) {
	for i, k := range accessKeys {
		o[i] = `,"` + k + `":"`
	}
	o[0] = o[0][1:]
	return o
}()

// trimEOL removes the line terminator (any \r and \n at the end).
func trimEOL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// openStr opens string field i of a parser's fixed layout (open[i] ends
// with `":"`), returning the key's span.
func (r *Record) openStr(open string, key string) (int, int) {
	r.arena = append(r.arena, open...)
	ke := len(r.arena) - 3
	return ke - len(key), ke
}

// closeStr closes a string field opened by openStr.
func (r *Record) closeStr(ks, ke int) {
	r.arena = append(r.arena, '"')
	r.closeField(ks, ke)
}

// accessField appends field i with the plain value v (escaped as needed).
func (r *Record) accessField(i int, v []byte) {
	ks, ke := r.openStr(accessOpen[i], accessKeys[i])
	r.arena = jsontext.AppendBody(r.arena, v)
	r.closeStr(ks, ke)
}

// plainByte[c] is true for the bytes a JSON string holds as they are.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// accessToken appends field i with the token at the start of b (up to the
// next stop byte, which must follow it) and returns the rest after the
// stop. Tokens are short: one tight loop finds the end and checks that no
// byte needs escaping, falling back to the escaper when one does.
func (r *Record) accessToken(i int, b []byte, stop byte) ([]byte, bool) {
	n := 0
	for n < len(b) && b[n] != stop && plainByte[b[n]] {
		n++
	}
	if n < len(b) && b[n] != stop {
		if n = bytes.IndexByte(b, stop); n < 0 {
			return nil, false
		}
		if n == 0 {
			return nil, false
		}
		r.accessField(i, b[:n])
		return b[n+1:], true
	}
	if n == 0 || n == len(b) {
		return nil, false
	}
	ks, ke := r.openStr(accessOpen[i], accessKeys[i])
	r.arena = append(r.arena, b[:n]...)
	r.closeStr(ks, ke)
	return b[n+1:], true
}

// accessQuoted appends field i with the double-quoted log value at the
// start of b (its backslash escapes decoded) and returns the rest after the
// closing quote.
func (r *Record) accessQuoted(i int, b []byte) ([]byte, bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, false
	}
	ks, ke := r.openStr(accessOpen[i], accessKeys[i])
	// Fast path: the value needs neither decoding nor escaping.
	if n := 1 + jsontext.PlainLen(b[1:]); n < len(b) && b[n] == '"' {
		r.arena = append(r.arena, b[1:n]...)
		r.closeStr(ks, ke)
		return b[n+1:], true
	}
	q, rest, ok := quoted(b)
	if !ok {
		return nil, false
	}
	r.scr = unescapeLog(r.scr[:0], q)
	r.arena = jsontext.AppendBody(r.arena, r.scr)
	r.closeStr(ks, ke)
	return rest, true
}

// parseAccess parses the Apache common or combined format (nginx's combined
// is the same), writing its fields straight into r's output form. Escapes
// in quoted fields (\" \\ \xHH, as Apache and nginx write them) are
// decoded. On false r is left a partial object: the caller restores it.
func parseAccess(r *Record, line []byte, combined bool) bool {
	b := trimEOL(line)
	r.startObject()
	var ok bool
	for i := 0; i < 3; i++ {
		if b, ok = r.accessToken(i, b, ' '); !ok {
			return false
		}
	}
	if len(b) == 0 || b[0] != '[' {
		return false
	}
	if b, ok = r.accessToken(3, b[1:], ']'); !ok || len(b) == 0 || b[0] != ' ' {
		return false
	}
	b, ok = r.accessQuoted(4, b[1:])
	if !ok || len(b) == 0 || b[0] != ' ' {
		return false
	}
	status, b, ok := token(b[1:])
	if !ok || !isDigits(status) {
		return false
	}
	r.accessField(5, status)
	var size []byte
	if combined {
		if size, b, ok = token(b); !ok {
			return false
		}
	} else {
		if bytes.IndexByte(b, ' ') >= 0 {
			return false
		}
		size = b
	}
	if !isDigits(size) && string(size) != "-" {
		return false
	}
	r.accessField(6, size)
	if !combined {
		return true
	}
	if b, ok = r.accessQuoted(7, b); !ok || len(b) == 0 || b[0] != ' ' {
		return false
	}
	// Anything after the user agent (nginx or Apache formats that append
	// fields) is left out.
	_, ok = r.accessQuoted(8, b[1:])
	return ok
}

func isDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// unescapeLog appends v with the log's backslash escapes (\" \\ \xHH \n
// \t, as written by Apache and nginx) decoded.
func unescapeLog(dst, v []byte) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '\\' || i+1 == len(v) {
			dst = append(dst, c)
			continue
		}
		i++
		switch v[i] {
		case 'x':
			if i+2 < len(v) {
				if n, ok := unhex2(v[i+1], v[i+2]); ok {
					dst = append(dst, n)
					i += 2
					continue
				}
			}
			dst = append(dst, '\\', 'x')
		case 'n':
			dst = append(dst, '\n')
		case 't':
			dst = append(dst, '\t')
		default:
			dst = append(dst, v[i])
		}
	}
	return dst
}

func unhex2(a, b byte) (byte, bool) {
	x, ok1 := unhex(a)
	y, ok2 := unhex(b)
	return x<<4 | y, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// parsePRI parses "<N>" at the start of b.
func parsePRI(b []byte) (pri, rest []byte, ok bool) {
	if len(b) < 3 || b[0] != '<' {
		return nil, nil, false
	}
	end := bytes.IndexByte(b[:min(len(b), 6)], '>')
	if end < 2 || !isDigits(b[1:end]) {
		return nil, nil, false
	}
	return b[1:end], b[end+1:], true
}

// parse3164 parses a BSD syslog line (RFC 3164), with or without <PRI>:
// "Oct 11 22:14:15 host program[pid]: message". Fields: priority (when
// present), timestamp, hostname, program, processid (when present),
// message.
func parse3164(r *Record, line []byte) bool {
	line = trimEOL(line)
	pri, b, hasPRI := parsePRI(line)
	if !hasPRI {
		b = line
	}
	// Mmm dd hh:mm:ss (the day padded with a space: "Oct  1")
	if len(b) < 16 || b[3] != ' ' || b[6] != ' ' || b[9] != ':' || b[12] != ':' || b[15] != ' ' || !isMonth(b[:3]) {
		return false
	}
	ts := b[:15]
	b = b[16:]
	host, b, ok := token(b)
	if !ok {
		return false
	}
	// TAG[pid]: or TAG: ; a message without a tag keeps it all.
	var prog, pid []byte
	msg := b
	if i := bytes.IndexByte(b, ':'); i > 0 && i < 64 && len(b) > i && bytes.IndexByte(b[:i], ' ') < 0 {
		tag := b[:i]
		msg = bytes.TrimPrefix(b[i+1:], []byte(" "))
		prog = tag
		if j := bytes.IndexByte(tag, '['); j > 0 && tag[len(tag)-1] == ']' {
			prog, pid = tag[:j], tag[j+1:len(tag)-1]
		}
	}
	r.startObject()
	if hasPRI {
		n, _ := strconv.Atoi(string(pri))
		r.SetInt("priority", int64(n))
	}
	r.addString("timestamp", ts)
	r.addString("hostname", host)
	if prog != nil {
		r.addString("program", prog)
	}
	if pid != nil {
		r.addString("processid", pid)
	}
	r.addString("message", msg)
	return true
}

func isMonth(b []byte) bool {
	switch string(b) {
	case "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec":
		return true
	}
	return false
}

// parse5424 parses an RFC 5424 line: "<PRI>1 TIMESTAMP HOSTNAME APP-NAME
// PROCID MSGID SD MSG". Fields: priority, version, timestamp, hostname,
// app_name, procid, msgid (each left out when "-"), structured_data (an
// object of SD-IDs, each an object of its params; left out when "-"),
// message (a UTF-8 BOM removed).
func parse5424(r *Record, line []byte) bool {
	line = trimEOL(line)
	pri, b, ok := parsePRI(line)
	if !ok {
		return false
	}
	ver, b, ok := token(b)
	if !ok || !isDigits(ver) {
		return false
	}
	var hdr [5][]byte // timestamp hostname app_name procid msgid
	for i := range hdr {
		if hdr[i], b, ok = token(b); !ok {
			return false
		}
	}
	// Structured data: "-" or [id k="v" ...]...
	var sd []byte
	switch {
	case len(b) > 0 && b[0] == '-':
		b = b[1:]
	case len(b) > 0 && b[0] == '[':
		var end int
		sd, end, ok = r.parseSD(b)
		if !ok {
			return false
		}
		b = b[end:]
	default:
		return false
	}
	var msg []byte
	if len(b) > 0 {
		if b[0] != ' ' {
			return false
		}
		msg = bytes.TrimPrefix(b[1:], []byte("\xef\xbb\xbf"))
	}
	n, _ := strconv.Atoi(string(pri))
	v, _ := strconv.Atoi(string(ver))
	r.startObject()
	r.SetInt("priority", int64(n))
	r.SetInt("version", int64(v))
	for i, k := range [...]string{"timestamp", "hostname", "app_name", "procid", "msgid"} {
		if string(hdr[i]) != "-" {
			r.addString(k, hdr[i])
		}
	}
	if sd != nil {
		r.SetJSON("structured_data", sd)
	}
	if msg != nil {
		r.addString("message", msg)
	}
	return true
}

// parseSD parses RFC 5424 structured data at the start of b into a JSON
// object {"id":{"name":"value",...},...}, returning it (in r.scr) and the
// index after the last ']'.
func (r *Record) parseSD(b []byte) ([]byte, int, bool) {
	out := append(r.scr[:0], '{')
	i := 0
	first := true
	for i < len(b) && b[i] == '[' {
		i++
		j := i
		for j < len(b) && b[j] != ' ' && b[j] != ']' {
			j++
		}
		if j == i || j == len(b) {
			return nil, 0, false
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = appendStr(out, b[i:j])
		out = append(out, ':', '{')
		i = j
		firstParam := true
		for i < len(b) && b[i] == ' ' {
			i++
			eq := bytes.IndexByte(b[i:], '=')
			if eq <= 0 || i+eq+1 >= len(b) || b[i+eq+1] != '"' {
				return nil, 0, false
			}
			name := b[i : i+eq]
			i += eq + 2
			val := r.scr2[:0]
			closed := false
			for i < len(b) {
				c := b[i]
				if c == '\\' && i+1 < len(b) && (b[i+1] == '"' || b[i+1] == '\\' || b[i+1] == ']') {
					val = append(val, b[i+1])
					i += 2
					continue
				}
				if c == '"' {
					closed = true
					i++
					break
				}
				val = append(val, c)
				i++
			}
			r.scr2 = val
			if !closed {
				return nil, 0, false
			}
			if !firstParam {
				out = append(out, ',')
			}
			firstParam = false
			out = appendStr(out, name)
			out = append(out, ':')
			out = appendStr(out, val)
		}
		if i >= len(b) || b[i] != ']' {
			return nil, 0, false
		}
		i++
		out = append(out, '}')
	}
	out = append(out, '}')
	r.scr = out
	return out, i, true
}

// parseApacheError parses an Apache httpd error log line in the default
// formats of 2.4 and 2.2:
//
//	[Thu May 12 08:28:57.652118 2011] [core:error] [pid 8777:tid 4326490112] [client ::1:58619] File does not exist: /favicon.ico
//	[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] client denied by server configuration: /export/home/htdocs/test
//
// Fields (the Kinesis Agent's APACHEERRORLOG names): timestamp, module
// (2.4), severity, processid, threadid (2.4, threaded MPMs), client,
// remote, message, and referer (Apache's ", referer: URL" suffix, cut
// from the message). Absent parts are left out.
//
// httpd 2.4 writes the peer of a request as "[client ADDR:PORT]", or as
// "[remote ADDR:PORT]" when the connection is not a client's (a proxy's
// backend connection); a line with both (a format that adds mod_remoteip's
// peer after the client) gives both, in either order. client and remote
// are the address as written:
// IPv4 or IPv6, with a port or without (2.2), an IPv6 address with a port
// bare as %a writes it ("::1:58619") or bracketed ("[::1]:443"), or a host
// name. What httpd writes before them (the source file and line at debug
// levels, "proxy_util.c(2155): ", and an OS error, "(70007)The timeout
// specified has expired: ") stays at the start of the message.
func parseApacheError(r *Record, line []byte) bool {
	b := trimEOL(line)
	ts, b, ok := bracket(b)
	if !ok || !errorLogTime(ts) {
		return false
	}
	lvl, b, ok := bracket(b)
	if !ok || len(lvl) == 0 {
		return false
	}
	var module []byte
	if i := bytes.LastIndexByte(lvl, ':'); i >= 0 {
		module, lvl = lvl[:i], lvl[i+1:]
	}
	if !isWord(lvl) {
		return false
	}
	var pid, tid []byte
	if bytes.HasPrefix(b, []byte("[pid ")) {
		var p []byte
		if p, b, ok = bracket(b); !ok {
			return false
		}
		p = p[len("pid "):]
		if i := bytes.Index(p, []byte(":tid ")); i >= 0 {
			pid, tid = p[:i], p[i+len(":tid "):]
		} else {
			pid = p
		}
		if !isDigits(pid) || (tid != nil && !isDigits(tid)) {
			return false
		}
	}
	// The peers: first, or after the file and line and the OS error.
	var prefix []byte
	if len(b) > 0 && b[0] != '[' {
		if i := peerAfter(b); i > 0 && errorLogPrefix(b[:i]) {
			prefix, b = b[:i+2], b[i+2:]
		}
	}
	var client, remote []byte
	for range 2 {
		var tag string
		switch {
		case client == nil && bytes.HasPrefix(b, []byte("[client ")):
			tag = "client"
		case remote == nil && bytes.HasPrefix(b, []byte("[remote ")):
			tag = "remote"
		}
		if tag == "" {
			break
		}
		addr, rest, ok := peer(b[len(tag)+2:])
		if !ok {
			return false
		}
		if tag == "client" {
			client = addr
		} else {
			remote = addr
		}
		b = rest
	}
	msg := b
	var referer []byte
	if i := bytes.LastIndex(msg, []byte(", referer: ")); i >= 0 && bytes.IndexByte(msg[i+len(", referer: "):], ' ') < 0 {
		msg, referer = msg[:i], msg[i+len(", referer: "):]
	}
	r.startObject()
	r.addString("timestamp", ts)
	if len(module) > 0 {
		r.addString("module", module)
	}
	r.addString("severity", lvl)
	if pid != nil {
		r.addString("processid", pid)
	}
	if tid != nil {
		r.addString("threadid", tid)
	}
	if client != nil {
		r.addString("client", client)
	}
	if remote != nil {
		r.addString("remote", remote)
	}
	if prefix != nil { // (a peer follows it)
		r.scr = append(append(r.scr[:0], prefix...), msg...)
		msg = r.scr
	}
	r.addString("message", msg)
	if referer != nil {
		r.addString("referer", referer)
	}
	return true
}

// peerAfter returns the index of the first ": [client " or ": [remote "
// in b, or -1.
func peerAfter(b []byte) int {
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(": ["))
		if j < 0 {
			return -1
		}
		i += j
		if t := b[i+3:]; bytes.HasPrefix(t, []byte("client ")) || bytes.HasPrefix(t, []byte("remote ")) {
			return i
		}
		i += 3
	}
}

// errorLogPrefix reports whether p is what httpd's default format writes
// between the pid and the peer: "file.c(N)" (debug levels), an OS error
// "(N)text" ("(OS N)text" on Windows), or both joined by ": ".
func errorLogPrefix(p []byte) bool {
	if i := bytes.IndexByte(p, '('); i > 0 && bytes.IndexByte(p[:i], ' ') < 0 {
		j := bytes.IndexByte(p[i:], ')')
		if j < 2 || !isDigits(p[i+1:i+j]) {
			return false
		}
		p = p[i+j+1:]
		if len(p) == 0 {
			return true
		}
		if !bytes.HasPrefix(p, []byte(": ")) {
			return false
		}
		p = p[2:]
	}
	return len(p) > 0 && p[0] == '(' && bytes.IndexByte(p, ')') > 1
}

// peer parses the address of a "[client " or "[remote " bracket, b being
// what follows the tag: an address without spaces up to the closing ']',
// or a bracketed IPv6 address ("[::1]") with or without a port. It
// returns the address as written and the rest after the bracket and one
// space.
func peer(b []byte) (addr, rest []byte, ok bool) {
	n := 0
	if len(b) > 0 && b[0] == '[' {
		end := bytes.IndexByte(b, ']')
		if end < 2 {
			return nil, nil, false
		}
		n = end + 1
		if n < len(b) && b[n] == ':' {
			p := n + 1
			for p < len(b) && '0' <= b[p] && b[p] <= '9' {
				p++
			}
			if p == n+1 {
				return nil, nil, false
			}
			n = p
		}
	} else {
		for n < len(b) && b[n] != ']' && b[n] != ' ' && b[n] != '[' {
			n++
		}
	}
	if n == 0 || n == len(b) || b[n] != ']' {
		return nil, nil, false
	}
	rest, ok = spaceOrEnd(b[n+1:])
	if !ok {
		return nil, nil, false
	}
	return b[:n], rest, true
}

// bracket returns the contents of the "[...]" at the start of b and the
// rest after it and one space (the end of the line may follow "]" too).
func bracket(b []byte) (in, rest []byte, ok bool) {
	if len(b) < 2 || b[0] != '[' {
		return nil, nil, false
	}
	end := bytes.IndexByte(b, ']')
	if end < 0 {
		return nil, nil, false
	}
	rest, ok = spaceOrEnd(b[end+1:])
	if !ok {
		return nil, nil, false
	}
	return b[1:end], rest, true
}

// spaceOrEnd returns what follows "]": b after one space, or b empty (the
// end of the line); anything else is not a bracketed field's end.
func spaceOrEnd(b []byte) ([]byte, bool) {
	switch {
	case len(b) == 0:
		return b, true
	case b[0] == ' ':
		return b[1:], true
	}
	return nil, false
}

// errorLogTime checks the shape of an error log time: "Wed Oct 11
// 14:32:52 2000", with microseconds in 2.4 ("...:52.123456 2000") and the
// day possibly padded ("Mar  7").
func errorLogTime(b []byte) bool {
	if len(b) < 24 || b[3] != ' ' || b[7] != ' ' || !isMonth(b[4:7]) {
		return false
	}
	year := b[len(b)-5:]
	return year[0] == ' ' && isDigits(year[1:]) && bytes.Count(b, []byte(":")) == 2
}

// isWord reports whether b is a non-empty run of ASCII letters and digits
// (a log level).
func isWord(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
