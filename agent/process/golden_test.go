package process

import (
	"encoding/json"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// newStage builds a stage of the given processors with a fixed host name.
func newStage(t testing.TB, cfg Config) (*Stage, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := New(cfg, Settings{Flow: "f", Hostname: "web-1", Registerer: reg})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s, reg
}

func procs(p ...Processor) Config { return Config{Processors: p} }

type golden struct {
	name string
	in   string
	want string // the record after processing; "" when it was dropped
}

func runGolden(t *testing.T, cfg Config, tests []golden) {
	t.Helper()
	s, _ := newStage(t, cfg)
	for _, tc := range tests {
		out, keep := s.Process([]byte(tc.in), Meta{Source: "src", Path: "/var/log/x.log", Offset: 42})
		if tc.want == "" {
			require.False(t, keep, "%s: kept %s", tc.name, out)
			continue
		}
		require.True(t, keep, tc.name)
		require.Equal(t, tc.want, string(out), tc.name)
		if string(out) != tc.in && len(out) > 0 && out[0] == '{' {
			require.True(t, json.Valid(out), "%s: %s", tc.name, out)
		}
	}
}

func TestLogToJSON_Apache(t *testing.T) {
	t.Parallel()
	runGolden(t, procs(Processor{LogToJSON: &LogConfig{Format: FormatApacheCombined}}), []golden{
		{"combined",
			`203.0.113.9 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"`,
			`{"host":"203.0.113.9","ident":"-","authuser":"frank","datetime":"10/Oct/2000:13:55:36 -0700","request":"GET /apache_pb.gif HTTP/1.0","response":"200","bytes":"2326","referer":"http://www.example.com/start.html","agent":"Mozilla/4.08 [en] (Win98; I ;Nav)"}`},
		{"escaped quote in the request, no body (-), trailing newline",
			`::1 - - [06/Dec/2026:07:05:44 +0000] "GET /q?a=\"x\" HTTP/1.1" 304 - "-" "curl/8.5.0"` + "\n",
			`{"host":"::1","ident":"-","authuser":"-","datetime":"06/Dec/2026:07:05:44 +0000","request":"GET /q?a=\"x\" HTTP/1.1","response":"304","bytes":"-","referer":"-","agent":"curl/8.5.0"}`},
		{"nginx \\x escapes decoded", `10.0.0.1 - - [06/Dec/2026:07:05:44 +0000] "\x16\x03\x01" 400 157 "-" "-"`,
			`{"host":"10.0.0.1","ident":"-","authuser":"-","datetime":"06/Dec/2026:07:05:44 +0000","request":"\u0016\u0003\u0001","response":"400","bytes":"157","referer":"-","agent":"-"}`},
		{"common line is not combined: unchanged", `127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326`,
			`127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326`},
		{"garbage unchanged", `not an access log`, `not an access log`},
		{"unterminated request unchanged", `1.2.3.4 - - [x] "GET / 200 1 "-" "-"`, `1.2.3.4 - - [x] "GET / 200 1 "-" "-"`},
	})
	runGolden(t, procs(Processor{LogToJSON: &LogConfig{Format: FormatApacheCommon}}), []golden{
		{"common", `127.0.0.1 user-identifier frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326`,
			`{"host":"127.0.0.1","ident":"user-identifier","authuser":"frank","datetime":"10/Oct/2000:13:55:36 -0700","request":"GET /apache_pb.gif HTTP/1.0","response":"200","bytes":"2326"}`},
		{"bad status unchanged", `127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" OK 2326`, `127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" OK 2326`},
	})
	runGolden(t, procs(Processor{LogToJSON: &LogConfig{Format: FormatNginxCombined}}), []golden{
		{"nginx combined", `192.168.1.20 - - [28/Jul/2006:10:27:10 -0300] "GET /cgi-bin/try/ HTTP/1.0" 200 3395 "-" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"`,
			`{"host":"192.168.1.20","ident":"-","authuser":"-","datetime":"28/Jul/2006:10:27:10 -0300","request":"GET /cgi-bin/try/ HTTP/1.0","response":"200","bytes":"3395","referer":"-","agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"}`},
	})
}

func TestLogToJSON_Syslog(t *testing.T) {
	t.Parallel()
	runGolden(t, procs(Processor{LogToJSON: &LogConfig{Format: FormatSyslog5424}}), []golden{
		{"RFC 5424 example with structured data",
			`<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] BOMAn application event log entry...`,
			`{"priority":165,"version":1,"timestamp":"2003-10-11T22:14:15.003Z","hostname":"mymachine.example.com","app_name":"evntslog","msgid":"ID47","structured_data":{"exampleSDID@32473":{"iut":"3","eventSource":"Application","eventID":"1011"}},"message":"BOMAn application event log entry..."}`},
		{"two SD elements, escapes, no message",
			`<165>1 2003-10-11T22:14:15.003Z host app 1234 - [a@1 k="x \"q\" \] y"][b@2 z="1"]`,
			`{"priority":165,"version":1,"timestamp":"2003-10-11T22:14:15.003Z","hostname":"host","app_name":"app","procid":"1234","structured_data":{"a@1":{"k":"x \"q\" ] y"},"b@2":{"z":"1"}}}`},
		{"nil SD, BOM removed", "<34>1 2003-10-11T22:14:15.003Z host su - ID47 - \xef\xbb\xbf'su root' failed",
			`{"priority":34,"version":1,"timestamp":"2003-10-11T22:14:15.003Z","hostname":"host","app_name":"su","msgid":"ID47","message":"'su root' failed"}`},
		{"3164 line is not 5424: unchanged", `<34>Oct 11 22:14:15 mymachine su: 'su root' failed`, `<34>Oct 11 22:14:15 mymachine su: 'su root' failed`},
		{"broken SD unchanged", `<1>1 - - - - - [a@1 k="v]`, `<1>1 - - - - - [a@1 k="v]`},
	})
	runGolden(t, procs(Processor{LogToJSON: &LogConfig{Format: FormatSyslog3164}}), []golden{
		{"RFC 3164 example", `<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8`,
			`{"priority":34,"timestamp":"Oct 11 22:14:15","hostname":"mymachine","program":"su","message":"'su root' failed for lonvick on /dev/pts/8"}`},
		{"/var/log/syslog line with pid", `Dec  6 07:05:44 web-1 sshd[1234]: Accepted publickey for deploy from 10.0.0.5 port 51234 ssh2`,
			`{"timestamp":"Dec  6 07:05:44","hostname":"web-1","program":"sshd","processid":"1234","message":"Accepted publickey for deploy from 10.0.0.5 port 51234 ssh2"}`},
		{"no tag", `Dec  6 07:05:44 web-1 kernel message without a tag`,
			`{"timestamp":"Dec  6 07:05:44","hostname":"web-1","message":"kernel message without a tag"}`},
		{"not syslog unchanged", `2026-12-06 07:05:44 INFO hello`, `2026-12-06 07:05:44 INFO hello`},
	})
}

func TestCSVToJSON(t *testing.T) {
	t.Parallel()
	runGolden(t, procs(Processor{CSVToJSON: &CSVConfig{Fields: []string{"id", "name", "note"}}}), []golden{
		{"plain", "1,alice,hello\n", `{"id":"1","name":"alice","note":"hello"}`},
		{"quotes, embedded delimiter, doubled quote, newline",
			"2,\"Smith, Bob\",\"said \"\"hi\"\"\nthen left\"",
			`{"id":"2","name":"Smith, Bob","note":"said \"hi\"\nthen left"}`},
		{"empty fields and more columns than names", `3,,,x,y`, `{"id":"3","name":"","note":"","_4":"x","_5":"y"}`},
		{"fewer columns", `4`, `{"id":"4"}`},
		{"unterminated quote unchanged", `5,"open`, `5,"open`},
		{"quote inside an unquoted field unchanged", `6,a"b,c`, `6,a"b,c`},
		{"junk after a closing quote unchanged", `7,"a"b,c`, `7,"a"b,c`},
	})
	runGolden(t, procs(Processor{CSVToJSON: &CSVConfig{Fields: []string{"a", "a"}}}), []golden{
		{"repeated name: the last column wins", "1,2", `{"a":"2"}`},
	})
	runGolden(t, procs(Processor{CSVToJSON: &CSVConfig{Fields: []string{`x"y`, "_3"}}}), []golden{
		{"escaped name; the third column's _3 over the column so named", "1,2,3", `{"x\"y":"1","_3":"3"}`},
	})
	runGolden(t, procs(Processor{CSVToJSON: &CSVConfig{Fields: []string{"a", "b"}, Delimiter: "\t", Quote: "'"}}), []golden{
		{"tab and single quotes", "x y\t'p\tq'", `{"a":"x y","b":"p\tq"}`},
	})
}

func TestOtherProcessors(t *testing.T) {
	t.Parallel()
	runGolden(t, procs(Processor{SingleLine: &SingleLineConfig{}}), []golden{
		{"stack trace", "java.lang.IllegalStateException: boom\n\tat a.B.c(B.java:10)\n\tat a.D.e(D.java:20)\n",
			"java.lang.IllegalStateException: boom at a.B.c(B.java:10) at a.D.e(D.java:20)"},
		{"one line unchanged", "plain", "plain"},
	})
	runGolden(t, procs(Processor{Regex: &RegexConfig{Pattern: `^(?P<level>[A-Z]+) (?P<msg>.*)$`}}), []golden{
		{"match", "WARN disk low", `{"level":"WARN","msg":"disk low"}`},
		{"no match unchanged", "warn lower case", "warn lower case"},
	})
	runGolden(t, procs(Processor{JSON: &JSONConfig{}}), []golden{
		{"object", `{"a": 1, "b": {"c": [1, 2]}}`, `{"a":1,"b":{"c": [1, 2]}}`},
		{"not JSON unchanged", `{a}`, `{a}`},
	})
	runGolden(t, procs(Processor{JSON: &JSONConfig{Target: "doc"}}), []golden{
		{"array to a target", "[1,\n2]", `{"message":"[1,\n2]","doc":[1,2]}`},
	})
	runGolden(t, procs(
		Processor{JSON: &JSONConfig{}},
		Processor{AddFields: &AddFieldsConfig{Fields: map[string]string{"env": "prod"}, Hostname: "host"}},
		Processor{Rename: map[string]string{"msg": "message"}},
		Processor{Remove: []string{"secret"}},
	), []golden{
		{"object", `{"msg":"hi","secret":"x"}`, `{"message":"hi","env":"prod","host":"web-1"}`},
		{"text", `plain`, `{"message":"plain","env":"prod","host":"web-1"}`},
	})
	runGolden(t, procs(Processor{Drop: &MatchConfig{Regex: `GET /health`}}), []golden{
		{"dropped", `1.2.3.4 "GET /healthz"`, ""},
		{"kept", `1.2.3.4 "GET /"`, `1.2.3.4 "GET /"`},
	})
	runGolden(t, procs(Processor{JSON: &JSONConfig{}}, Processor{Keep: &MatchConfig{Field: "level", Regex: `^(ERROR|WARN)$`}}), []golden{
		{"kept", `{"level":"ERROR"}`, `{"level":"ERROR"}`},
		{"dropped", `{"level":"INFO"}`, ""},
		{"no field: dropped", `{"x":1}`, ""},
	})
	runGolden(t, procs(Processor{Redact: &RedactConfig{}}), []golden{
		{"email and card", "user bob@example.com paid with 4111 1111 1111 1111 ok", "user [REDACTED] paid with [REDACTED] ok"},
		{"nothing", "nothing to hide", "nothing to hide"},
	})
	runGolden(t, procs(Processor{JSON: &JSONConfig{}}, Processor{Redact: &RedactConfig{Patterns: []string{"email"}, Mask: "***"}}), []golden{
		{"object values", `{"to":"a@b.io","n":1}`, `{"to":"***","n":1}`},
	})
}

func TestLogToJSON_ObjectMessage(t *testing.T) {
	t.Parallel()
	// An object's message field is parsed, its other fields kept.
	runGolden(t, procs(Processor{AddFields: &AddFieldsConfig{Fields: map[string]string{"env": "prod"}}}, Processor{LogToJSON: &LogConfig{Format: FormatSyslog3164}}), []golden{
		{"message parsed", `Dec  6 07:05:44 web-1 cron[7]: job done`, `{"env":"prod","timestamp":"Dec  6 07:05:44","hostname":"web-1","program":"cron","processid":"7","message":"job done"}`},
	})
}

func TestEnvelope(t *testing.T) {
	t.Parallel()
	s, _ := newStage(t, Config{Envelope: Envelope{Host: "host", File: "log.file", Offset: "offset", Source: "src", Fields: map[string]string{"team": "a"}}})
	out, keep := s.Process([]byte("Exception in thread \"main\"\n\tat x.Y.z(Y.java:1)"), Meta{Source: "app", Path: "/var/log/app.log", Offset: 1234})
	require.True(t, keep)
	require.Equal(t, `{"message":"Exception in thread \"main\"\n\tat x.Y.z(Y.java:1)","host":"web-1","log.file":"/var/log/app.log","offset":1234,"src":"app","team":"a"}`, string(out))
	out, _ = s.Process([]byte(`{"level":"info","host":"theirs"}`), Meta{Source: "app"})
	require.Equal(t, `{"level":"info","host":"web-1","src":"app","team":"a"}`, string(out), "an object keeps its fields; the envelope's win; no file for non-file sources")

	s, _ = newStage(t, Config{Envelope: Envelope{Timestamp: "@timestamp"}})
	out, _ = s.Process([]byte("x"), Meta{})
	var v struct {
		TS string `json:"@timestamp"`
	}
	require.NoError(t, json.Unmarshal(out, &v))
	require.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$`, v.TS)
}

func TestMetricsPerProcessor(t *testing.T) {
	t.Parallel()
	s, reg := newStage(t, procs(Processor{LogToJSON: &LogConfig{Format: FormatApacheCommon}}, Processor{Drop: &MatchConfig{Field: "response", Regex: "^5"}}))
	for _, l := range []string{
		`1.1.1.1 - - [d] "GET / HTTP/1.1" 200 1`,
		`1.1.1.1 - - [d] "GET / HTTP/1.1" 500 1`,
		`junk`,
	} {
		s.Process([]byte(l), Meta{})
	}
	require.NoError(t, testutil.GatherAndCompare(reg, stringsReader(`
# HELP agent_processor_records_total Records through each processor of a flow, by result: in, out, failed (could not be parsed, passed unchanged), dropped (drop/keep).
# TYPE agent_processor_records_total counter
agent_processor_records_total{flow="f",processor="drop",result="dropped",step="1"} 1
agent_processor_records_total{flow="f",processor="drop",result="failed",step="1"} 0
agent_processor_records_total{flow="f",processor="drop",result="in",step="1"} 3
agent_processor_records_total{flow="f",processor="drop",result="out",step="1"} 2
agent_processor_records_total{flow="f",processor="log_to_json",result="dropped",step="0"} 0
agent_processor_records_total{flow="f",processor="log_to_json",result="failed",step="0"} 1
agent_processor_records_total{flow="f",processor="log_to_json",result="in",step="0"} 3
agent_processor_records_total{flow="f",processor="log_to_json",result="out",step="0"} 3
`), "agent_processor_records_total"))
}

func TestLogToJSON_ApacheError(t *testing.T) {
	t.Parallel()
	runGolden(t, procs(Processor{LogToJSON: &LogConfig{Format: FormatApacheError}}), []golden{
		{"2.4 threaded, client with port",
			`[Thu May 12 08:28:57.652118 2011] [core:error] [pid 8777:tid 4326490112] [client ::1:58619] File does not exist: /usr/local/apache2/htdocs/favicon.ico`,
			`{"timestamp":"Thu May 12 08:28:57.652118 2011","module":"core","severity":"error","processid":"8777","threadid":"4326490112","client":"::1:58619","message":"File does not exist: /usr/local/apache2/htdocs/favicon.ico"}`},
		{"2.4 lifecycle notice, no client",
			`[Sun Dec 06 07:05:44.123456 2026] [mpm_event:notice] [pid 1234:tid 140234567890] AH00489: Apache/2.4.57 (Unix) configured -- resuming normal operations` + "\n",
			`{"timestamp":"Sun Dec 06 07:05:44.123456 2026","module":"mpm_event","severity":"notice","processid":"1234","threadid":"140234567890","message":"AH00489: Apache/2.4.57 (Unix) configured -- resuming normal operations"}`},
		{"2.4 prefork (no tid), OS error before the client, referer",
			`[Wed Oct 11 14:32:52.123456 2000] [proxy_fcgi:error] [pid 4321] (70007)The timeout specified has expired: [client 203.0.113.9:52144] AH01075: Error dispatching request to : (polling), referer: https://www.example.com/cart`,
			`{"timestamp":"Wed Oct 11 14:32:52.123456 2000","module":"proxy_fcgi","severity":"error","processid":"4321","client":"203.0.113.9:52144","message":"(70007)The timeout specified has expired: AH01075: Error dispatching request to : (polling)","referer":"https://www.example.com/cart"}`},
		{"2.4 trace level, PHP message with quotes",
			`[Tue Mar 05 10:11:12.345678 2024] [php:error] [pid 45:tid 46] [client 10.0.0.1:1234] PHP Fatal error:  Uncaught Error: Call to undefined function "foo()" in /var/www/index.php:3`,
			`{"timestamp":"Tue Mar 05 10:11:12.345678 2024","module":"php","severity":"error","processid":"45","threadid":"46","client":"10.0.0.1:1234","message":"PHP Fatal error:  Uncaught Error: Call to undefined function \"foo()\" in /var/www/index.php:3"}`},
		{"2.4 unknown module ([:error])",
			`[Mon Jan 01 00:00:00.000001 2024] [:error] [pid 7] [client 10.1.1.1:80] mod_security: Access denied`,
			`{"timestamp":"Mon Jan 01 00:00:00.000001 2024","severity":"error","processid":"7","client":"10.1.1.1:80","message":"mod_security: Access denied"}`},
		{"2.2 with client",
			`[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] client denied by server configuration: /export/home/live/ap/htdocs/test`,
			`{"timestamp":"Wed Oct 11 14:32:52 2000","severity":"error","client":"127.0.0.1","message":"client denied by server configuration: /export/home/live/ap/htdocs/test"}`},
		{"2.2 padded day, no client",
			`[Sun Mar  7 16:02:00 2004] [notice] Apache/2.2.3 (Unix) configured -- resuming normal operations`,
			`{"timestamp":"Sun Mar  7 16:02:00 2004","severity":"notice","message":"Apache/2.2.3 (Unix) configured -- resuming normal operations"}`},
		{"2.4 IPv6 client with a bracketed port",
			`[Sun Dec 06 07:05:44.123456 2026] [authz_core:error] [pid 12:tid 13] [client [::1]:443] AH01630: client denied by server configuration: /srv/private`,
			`{"timestamp":"Sun Dec 06 07:05:44.123456 2026","module":"authz_core","severity":"error","processid":"12","threadid":"13","client":"[::1]:443","message":"AH01630: client denied by server configuration: /srv/private"}`},
		{"IPv6 client without port, bracketed and not",
			`[Sun Dec 06 07:05:44 2026] [error] [client [2001:db8::1]] denied`,
			`{"timestamp":"Sun Dec 06 07:05:44 2026","severity":"error","client":"[2001:db8::1]","message":"denied"}`},
		{"IPv6 client as httpd's %a writes it (address:port, no brackets)",
			`[Sun Dec 06 07:05:44.1 2026] [core:info] [pid 1] [client 2001:db8::7:51000] AH00128: File does not exist: /x`,
			`{"timestamp":"Sun Dec 06 07:05:44.1 2026","module":"core","severity":"info","processid":"1","client":"2001:db8::7:51000","message":"AH00128: File does not exist: /x"}`},
		{"2.4 remote (a backend connection: no client)",
			`[Sun Dec 06 07:05:44.123456 2026] [ssl:error] [pid 9:tid 10] [remote 10.0.0.5:8443] AH02039: Certificate Verification: Error (20): unable to get local issuer certificate`,
			`{"timestamp":"Sun Dec 06 07:05:44.123456 2026","module":"ssl","severity":"error","processid":"9","threadid":"10","remote":"10.0.0.5:8443","message":"AH02039: Certificate Verification: Error (20): unable to get local issuer certificate"}`},
		{"client and remote (the peer, when it differs), OS error before them, referer",
			`[Sun Dec 06 07:05:44.123456 2026] [proxy_http:error] [pid 9:tid 10] (104)Connection reset by peer: [client 203.0.113.9:52144] [remote 1.2.3.4:5678] AH01102: error reading status line from remote server 10.0.0.5:8080, referer: https://e.com/`,
			`{"timestamp":"Sun Dec 06 07:05:44.123456 2026","module":"proxy_http","severity":"error","processid":"9","threadid":"10","client":"203.0.113.9:52144","remote":"1.2.3.4:5678","message":"(104)Connection reset by peer: AH01102: error reading status line from remote server 10.0.0.5:8080","referer":"https://e.com/"}`},
		{"remote before client, IPv6 remote with a bracketed port",
			`[Sun Dec 06 07:05:44 2026] [error] [remote [fe80::1]:5678] [client 10.0.0.1] msg`,
			`{"timestamp":"Sun Dec 06 07:05:44 2026","severity":"error","client":"10.0.0.1","remote":"[fe80::1]:5678","message":"msg"}`},
		{"debug level: the source file and line before the client, kept in the message",
			`[Sun Dec 06 07:05:44.123456 2026] [proxy:debug] [pid 9:tid 10] proxy_util.c(2155): [client 10.0.0.1:5000] AH00942: HTTP: has acquired connection for (10.0.0.5)`,
			`{"timestamp":"Sun Dec 06 07:05:44.123456 2026","module":"proxy","severity":"debug","processid":"9","threadid":"10","client":"10.0.0.1:5000","message":"proxy_util.c(2155): AH00942: HTTP: has acquired connection for (10.0.0.5)"}`},
		{"debug level, file and line and OS error before the remote",
			`[Sun Dec 06 07:05:44.123456 2026] [proxy:error] [pid 9] proxy_util.c(2600): (111)Connection refused: [remote 10.0.0.5:8080] AH00957: HTTP: attempt to connect to 10.0.0.5:8080 (10.0.0.5) failed`,
			`{"timestamp":"Sun Dec 06 07:05:44.123456 2026","module":"proxy","severity":"error","processid":"9","remote":"10.0.0.5:8080","message":"proxy_util.c(2600): (111)Connection refused: AH00957: HTTP: attempt to connect to 10.0.0.5:8080 (10.0.0.5) failed"}`},
		{"Windows OS error before the client", `[Sun Dec 06 07:05:44 2026] [error] (OS 10054)An existing connection was forcibly closed by the remote host.  : [client 10.0.0.1] core_output_filter: writing data to the network`,
			`{"timestamp":"Sun Dec 06 07:05:44 2026","severity":"error","client":"10.0.0.1","message":"(OS 10054)An existing connection was forcibly closed by the remote host.  : core_output_filter: writing data to the network"}`},
		{"a message that quotes [client ...] later keeps it", `[Sun Dec 06 07:05:44 2026] [error] mod_x: saw [client 1.2.3.4] in a header`,
			`{"timestamp":"Sun Dec 06 07:05:44 2026","severity":"error","message":"mod_x: saw [client 1.2.3.4] in a header"}`},
		{"unclosed bracketed IPv6 client unchanged", `[Wed Oct 11 14:32:52 2000] [error] [client [::1:443] boom`, `[Wed Oct 11 14:32:52 2000] [error] [client [::1:443] boom`},
		{"junk after a bracketed IPv6 client unchanged", `[Wed Oct 11 14:32:52 2000] [error] [client [::1]x] boom`, `[Wed Oct 11 14:32:52 2000] [error] [client [::1]x] boom`},
		{"empty client unchanged", `[Wed Oct 11 14:32:52 2000] [error] [client ] boom`, `[Wed Oct 11 14:32:52 2000] [error] [client ] boom`},
		{"a second client stays in the message", `[Wed Oct 11 14:32:52 2000] [error] [client 1.1.1.1] [client 2.2.2.2] boom`,
			`{"timestamp":"Wed Oct 11 14:32:52 2000","severity":"error","client":"1.1.1.1","message":"[client 2.2.2.2] boom"}`},
		{"an access log line unchanged", `127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326`, `127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326`},
		{"a continuation line (PHP stack trace) unchanged", `#0 /var/www/index.php(3): foo()`, `#0 /var/www/index.php(3): foo()`},
		{"bad time unchanged", `[yesterday] [error] boom`, `[yesterday] [error] boom`},
		{"bad pid unchanged", `[Wed Oct 11 14:32:52 2000] [error] [pid x] boom`, `[Wed Oct 11 14:32:52 2000] [error] [pid x] boom`},
		{"unclosed client unchanged", `[Wed Oct 11 14:32:52 2000] [error] [client 1.2.3.4 boom`, `[Wed Oct 11 14:32:52 2000] [error] [client 1.2.3.4 boom`},
		{"level with spaces unchanged", `[Wed Oct 11 14:32:52 2000] [very bad] boom`, `[Wed Oct 11 14:32:52 2000] [very bad] boom`},
	})
}

// Records every step passed are counted at once when the metric is
// collected: a scrape sees all of them, while records go on being
// processed, and a stage rebuilt for the same flow (a reload) adds to the
// same series.
func TestMetrics_CountedAtScrapeAndAcrossStages(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	cfg := procs(Processor{LogToJSON: &LogConfig{Format: FormatApacheCommon}}, Processor{AddFields: &AddFieldsConfig{Hostname: "h"}})
	value := func(step, res string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				l := map[string]string{}
				for _, lp := range m.GetLabel() {
					l[lp.GetName()] = lp.GetValue()
				}
				if l["step"] == step && l["result"] == res {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	line := []byte(`1.1.1.1 - - [d] "GET / HTTP/1.1" 200 1`)
	s1, err := New(cfg, Settings{Flow: "f", Hostname: "w", Registerer: reg})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 2000; i++ {
			s1.Process(line, Meta{})
		}
		s1.Process([]byte("junk"), Meta{})
	}()
	prev := 0.0
	for i := 0; i < 20; i++ { // scrapes while records are processed: never less than before
		v := value("1", "out")
		require.GreaterOrEqual(t, v, prev)
		prev = v
	}
	<-done
	require.Equal(t, 2001.0, value("0", "in"))
	require.Equal(t, 2001.0, value("0", "out"))
	require.Equal(t, 1.0, value("0", "failed"))
	require.Equal(t, 2001.0, value("1", "out"))

	s2, err := New(cfg, Settings{Flow: "f", Hostname: "w", Registerer: reg}) // a reload: new before old closes
	require.NoError(t, err)
	s2.Process(line, Meta{})
	s1.Process(line, Meta{}) // the old stage's last record, settled when it closes
	s1.Close()
	s1.Close()
	require.Equal(t, 2003.0, value("0", "in"))
	require.Equal(t, 2003.0, value("1", "out"))
	s2.Close()
}
