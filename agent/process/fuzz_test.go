package process

import (
	"encoding/json"
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
		if string(out) == string(in) {
			return
		}
		var obj map[string]any
		if err := json.Unmarshal(out, &obj); err != nil {
			t.Fatalf("%q made %q: %v", in, out, err)
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
