package process

import (
	"bytes"
	"encoding/json"
	"regexp"
	"testing"
)

// fuzzParser checks that a parser never panics and that what it makes of
// any input is one valid JSON object, or the input unchanged.
func fuzzParser(f *testing.F, cfg Config, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	s, err := New(cfg, Settings{Hostname: "h"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(s.Close)
	f.Fuzz(func(t *testing.T, in []byte) {
		out, keep := s.Process(in, Meta{})
		if !keep {
			t.Fatal("dropped without a drop rule")
		}
		if !s.Object() {
			if string(out) != string(in) {
				t.Fatalf("%q changed to %q but is not an object", in, out)
			}
			return
		}
		// An object the stage made: valid, one line, no white space
		// around it (what an output sends without checking it again).
		var obj map[string]any
		if err := json.Unmarshal(out, &obj); err != nil {
			t.Fatalf("%q made %q: %v", in, out, err)
		}
		if bytes.ContainsAny(out, "\r\n") || out[0] != '{' || out[len(out)-1] != '}' {
			t.Fatalf("%q made %q: not one line", in, out)
		}
	})
}

func FuzzCSV(f *testing.F) {
	fuzzParser(f, procs(Processor{CSVToJSON: &CSVConfig{Fields: []string{"a", "b"}}}),
		"1,2", `"a,b","c""d"`, "\"x\ny\",z", `"open`, `,,,`, "a\xffb,\"\x00\"")
}

func FuzzLogToJSON(f *testing.F) {
	seeds := []string{
		`203.0.113.9 - frank [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.0" 200 2326 "http://x/" "Mozilla/4.08"`,
		`127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 -`,
		`1.2.3.4 - - [x] "\x16\x03" 400 0 "-" "-"`,
		`<165>1 2003-10-11T22:14:15.003Z host app - ID47 [id@1 k="v\"]"][b c="d"] msg`,
		`<34>Oct 11 22:14:15 host su[12]: msg`,
		`Dec  6 07:05:44 web kernel: x`,
		`<1>1 - - - - - -`,
	}
	for _, format := range logFormats {
		f.Add([]byte(format)) // a line naming the format: tried by every parser below
	}
	fuzzParser(f, procs(
		Processor{LogToJSON: &LogConfig{Format: FormatSyslog5424}},
		Processor{LogToJSON: &LogConfig{Format: FormatSyslog3164}},
		Processor{LogToJSON: &LogConfig{Format: FormatApacheCombined}},
		Processor{LogToJSON: &LogConfig{Format: FormatApacheCommon}},
	), seeds...)
}

func FuzzApacheError(f *testing.F) {
	fuzzParser(f, procs(Processor{LogToJSON: &LogConfig{Format: FormatApacheError}}),
		`[Thu May 12 08:28:57.652118 2011] [core:error] [pid 8777:tid 4326490112] [client ::1:58619] File does not exist: /favicon.ico`,
		`[Wed Oct 11 14:32:52.123456 2000] [proxy_fcgi:error] [pid 4321] (70007)The timeout specified has expired: [client 203.0.113.9:52144] AH01075: x, referer: https://e.com/`,
		`[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] client denied: /x`,
		`[Sun Mar  7 16:02:00 2004] [notice] Apache/2.2.3 (Unix) configured`,
		`[Mon Jan 01 00:00:00.000001 2024] [:error] [pid 7]`,
		`[Sun Dec 06 07:05:44.123456 2026] [authz_core:error] [pid 12:tid 13] [client [::1]:443] AH01630: denied`,
		`[Sun Dec 06 07:05:44 2026] [error] [client [2001:db8::1]] [remote [fe80::1]:5678] x`,
		`[Sun Dec 06 07:05:44.1 2026] [proxy:error] [pid 9] proxy_util.c(2600): (111)Connection refused: [remote 10.0.0.5:8080] AH00957: x`,
		`[Sun Dec 06 07:05:44 2026] [error] [remote 1.2.3.4:5678] [client 10.0.0.1] y, referer: z`,
		`[Sun Dec 06 07:05:44 2026] [error] [client [::1`,
		"[Wed Oct 11 14:32:52 2000] [error] \xff\x00\"")
}

// FuzzJSONEdits runs the editing processors on JSON input: every edit
// splices the object in place and must leave it valid.
func FuzzJSONEdits(f *testing.F) {
	fuzzParser(f, procs(
		Processor{JSON: &JSONConfig{}},
		Processor{Rename: map[string]string{"a": "b", "c.d": "e", "s": "s.t.u", "c.f": "c.f.g"}},
		Processor{Remove: []string{"x", "y.z"}},
		Processor{AddFields: &AddFieldsConfig{Fields: map[string]string{"a": "1", "f.g": "2"}}},
		Processor{Redact: &RedactConfig{Patterns: []string{"email", `"`}}},
	), `{"a":1,"b":2,"x":3}`, `{"c":{"d":[1,{"x":2}]},"y":{"z":1,"w":2}}`, "{\n\"a\" : {\"b\":\n1}}", `{"x":"a@b.io \"q\""}`, `{"f":"not an object"}`, `{"s":"x","c":{"f":[1],"d":{"s":2}}}`, `{"s":{"t":1}}`)
}

// accessRef is a reference for the combined format, written as a regular
// expression: whatever it matches the hand-written parser must parse, to
// the same values.
var accessRef = regexp.MustCompile(`(?s)^([^ ]+) ([^ ]+) ([^ ]+) \[([^\]]+)\] "((?:[^"\\]|\\.)*)" ([0-9]+) ([0-9]+|-) "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"`)

// FuzzAccessLogDifferential checks the access-log parser (its fast paths
// and its escaping) against accessRef and encoding/json.
func FuzzAccessLogDifferential(f *testing.F) {
	for _, s := range []string{
		`203.0.113.9 - frank [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.0" 200 2326 "http://x/" "Mozilla/4.08"`,
		`::1 - - [06/Dec/2026:07:05:44 +0000] "GET /q?a=\"x\" HTTP/1.1" 304 - "-" "curl/8.5.0" extra`,
		`10.0.0.1 - - [06/Dec/2026:07:05:44 +0000] "\x16\x03\x01\xff" 400 157 "-" "é\t"`,
		"1.2.3.4 - us\u00e9r [x] \"a\\\\b\\\"\" 200 1 \"\" \"\"",
	} {
		f.Add([]byte(s))
	}
	s, err := New(procs(Processor{LogToJSON: &LogConfig{Format: FormatApacheCombined}}), Settings{Hostname: "h"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(s.Close)
	f.Fuzz(func(t *testing.T, in []byte) {
		line := trimEOL(in)
		m := accessRef.FindSubmatch(line)
		out, _ := s.Process(in, Meta{})
		if m == nil {
			return // the parser may take more (tabs in tokens, anything after the agent)
		}
		if !s.Object() {
			t.Fatalf("%q: the reference parses it, the parser does not", in)
		}
		var got map[string]string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%q made %q: %v", in, out, err)
		}
		for i, k := range accessKeys {
			v := m[i+1]
			if k == "request" || k == "referer" || k == "agent" {
				v = unescapeLog(nil, v)
			}
			enc, _ := json.Marshal(string(v)) // invalid UTF-8 to U+FFFD, byte by byte
			var want string
			_ = json.Unmarshal(enc, &want)
			if got[k] != want {
				t.Fatalf("%q: %s = %q, want %q", in, k, got[k], want)
			}
		}
	})
}
