package process

import (
	"fmt"
	"testing"
)

// Benchmarks per processor: b.SetBytes makes `go test -bench` print MB/s of
// input; allocs/op is per record.
func BenchmarkProcessors(b *testing.B) {
	combined := []byte(`203.0.113.9 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif?id=12345&session=abcdef HTTP/1.1" 200 2326 "http://www.example.com/start.html" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"`)
	cases := []struct {
		name string
		cfg  Config
		in   []byte
	}{
		{"log_to_json/apache_combined", procs(Processor{LogToJSON: &LogConfig{Format: FormatApacheCombined}}), combined},
		{"log_to_json/apache_combined+add_fields_host", procs(Processor{LogToJSON: &LogConfig{Format: FormatApacheCombined}}, Processor{AddFields: &AddFieldsConfig{Hostname: "host"}}), combined},
		{"log_to_json/syslog_rfc5424", procs(Processor{LogToJSON: &LogConfig{Format: FormatSyslog5424}}),
			[]byte(`<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] An application event log entry`)},
		{"log_to_json/apache_error", procs(Processor{LogToJSON: &LogConfig{Format: FormatApacheError}}),
			[]byte(`[Wed Oct 11 14:32:52.123456 2000] [proxy_fcgi:error] [pid 4321:tid 140234] [client 203.0.113.9:52144] AH01071: Got error 'Primary script unknown', referer: https://www.example.com/cart`)},
		{"log_to_json/apache_error_ipv6_client_and_remote", procs(Processor{LogToJSON: &LogConfig{Format: FormatApacheError}}),
			[]byte(`[Wed Oct 11 14:32:52.123456 2000] [proxy_http:error] [pid 4321:tid 140234] (104)Connection reset by peer: [client [2001:db8::7]:52144] [remote 10.0.0.5:8080] AH01102: error reading status line from remote server 10.0.0.5:8080, referer: https://www.example.com/cart`)},
		{"json+rename,remove nested", procs(Processor{JSON: &JSONConfig{}}, Processor{Rename: map[string]string{"user.id": "user_id"}}, Processor{Remove: []string{"user.name"}}),
			[]byte(`{"level":"info","msg":"user logged in","user":{"id":42,"name":"bob"},"ms":12.5}`)},
		{"log_to_json/syslog_rfc3164", procs(Processor{LogToJSON: &LogConfig{Format: FormatSyslog3164}}),
			[]byte(`<34>Dec  6 07:05:44 web-1 sshd[1234]: Accepted publickey for deploy from 10.0.0.5 port 51234 ssh2`)},
		{"csv_to_json", procs(Processor{CSVToJSON: &CSVConfig{Fields: []string{"id", "name", "city", "note", "amount"}}}),
			[]byte(`12345,"Smith, John",London,"said ""hello"" twice",1234.50`)},
		{"regex", procs(Processor{Regex: &RegexConfig{Pattern: `^(?P<ts>\S+ \S+) (?P<level>[A-Z]+) (?P<msg>.*)$`}}),
			[]byte(`2026-12-06 07:05:44 INFO user logged in from 10.0.0.5 with session abcdef`)},
		{"json", procs(Processor{JSON: &JSONConfig{}}), []byte(`{"level":"info","msg":"user logged in","user":{"id":42,"name":"bob"},"ms":12.5}`)},
		{"single_line", procs(Processor{SingleLine: &SingleLineConfig{}}), []byte("java.lang.IllegalStateException: boom\n\tat a.B.c(B.java:10)\n\tat a.D.e(D.java:20)")},
		{"drop_regex", procs(Processor{Drop: &MatchConfig{Regex: `GET /health`}}), combined},
		{"redact_email", procs(Processor{Redact: &RedactConfig{Patterns: []string{"email"}}}), []byte(`user bob@example.com logged in from 10.0.0.5 with session abcdef`)},
		{"envelope/host,file,offset", Config{Envelope: Envelope{Host: "host", File: "file", Offset: "offset"}}, combined},
		{"envelope/timestamp", Config{Envelope: Envelope{Timestamp: "ts"}}, combined},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			s, err := New(tc.cfg, Settings{Hostname: "web-1"})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			meta := Meta{Source: "app", Path: "/var/log/app/access.log", Offset: 123456}
			if out, _ := s.Process(tc.in, meta); len(out) == 0 {
				b.Fatal("empty output")
			}
			b.SetBytes(int64(len(tc.in)))
			b.ReportAllocs()
			for b.Loop() {
				s.Process(tc.in, meta)
			}
		})
	}
}

func ExampleStage() {
	s, _ := New(Config{Processors: []Processor{{LogToJSON: &LogConfig{Format: FormatApacheCommon}}}}, Settings{Hostname: "h"})
	defer s.Close()
	out, _ := s.Process([]byte(`127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326`), Meta{})
	fmt.Println(string(out))
	// Output: {"host":"127.0.0.1","ident":"-","authuser":"-","datetime":"10/Oct/2000:13:55:36 -0700","request":"GET / HTTP/1.0","response":"200","bytes":"2326"}
}
