package socket

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// clock3164 is the clock RFC 3164 timestamps take their year and zone from
// in these tests.
var clock3164 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// Real-world lines: RFC 5424's own examples, util-linux logger, rsyslog,
// systemd, glibc syslog(3), Cisco-like and busybox senders.
func TestParseSyslog_Golden(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"rfc5424 example 1", "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8",
			`{"timestamp":"2003-10-11T22:14:15.003Z","host":"mymachine.example.com","app":"su","msgid":"ID47","facility":"auth","severity":"crit","message":"'su root' failed for lonvick on /dev/pts/8"}`},
		{"rfc5424 example 2 no message", "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - -",
			`{"timestamp":"2003-08-24T05:14:15.000003-07:00","host":"192.0.2.1","app":"myproc","procid":"8710","facility":"local4","severity":"notice"}`},
		{"rfc5424 example 3 structured data", `<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] An application event log entry...`,
			`{"timestamp":"2003-10-11T22:14:15.003Z","host":"mymachine.example.com","app":"evntslog","msgid":"ID47","facility":"local4","severity":"notice","structured_data":{"exampleSDID@32473":{"iut":"3","eventSource":"Application","eventID":"1011"}},"message":"An application event log entry..."}`},
		{"rfc5424 example 4 two sd elements", `<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3"][examplePriority@32473 class="high"]`,
			`{"timestamp":"2003-10-11T22:14:15.003Z","host":"mymachine.example.com","app":"evntslog","msgid":"ID47","facility":"local4","severity":"notice","structured_data":{"exampleSDID@32473":{"iut":"3"},"examplePriority@32473":{"class":"high"}}}`},
		{"util-linux logger --rfc5424", `<13>1 2026-12-06T07:06:59.883150+00:00 vm myapp - MID [timeQuality tzKnown="1" isSynced="0"][zoo@123 tiger="hungry"] hello dgram`,
			`{"timestamp":"2026-12-06T07:06:59.883150+00:00","host":"vm","app":"myapp","msgid":"MID","facility":"user","severity":"notice","structured_data":{"timeQuality":{"tzKnown":"1","isSynced":"0"},"zoo@123":{"tiger":"hungry"}},"message":"hello dgram"}`},
		{"sd value escapes", `<14>1 - - - - - [a b="q\"uote \\ back \] br \x"] m`,
			`{"facility":"user","severity":"info","structured_data":{"a":{"b":"q\"uote \\ back ] br \\x"}},"message":"m"}`},
		{"rfc5424 nil everything", "<0>1 - - - - - -",
			`{"facility":"kern","severity":"emerg"}`},
		{"rfc5424 message with newline and invalid utf8", "<191>1 - h a p m - line1\nline2\xff\"",
			`{"host":"h","app":"a","procid":"p","msgid":"m","facility":"local7","severity":"debug","message":"line1\nline2\ufffd\""}`},
		{"glibc syslog(3) on /dev/log", "<30>Dec  6 07:10:00 sshd[1234]: Accepted publickey for root",
			`{"timestamp":"2026-12-06T07:10:00Z","app":"sshd","procid":"1234","facility":"daemon","severity":"info","message":"Accepted publickey for root"}`},
		{"rfc3164 example", "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
			`{"timestamp":"2026-10-11T22:14:15Z","host":"mymachine","app":"su","facility":"auth","severity":"crit","message":"'su root' failed for lonvick on /dev/pts/8"}`},
		{"rfc3164 with pid and host", "<13>Dec  6 07:10:00 vm myapp[42]: hello world",
			`{"timestamp":"2026-12-06T07:10:00Z","host":"vm","app":"myapp","procid":"42","facility":"user","severity":"notice","message":"hello world"}`},
		{"rfc3164 last year (a date ahead of the clock)", "<13>Dec 31 23:59:59 vm cron: run",
			`{"timestamp":"2025-12-31T23:59:59Z","host":"vm","app":"cron","facility":"user","severity":"notice","message":"run"}`},
		{"rfc3164 host and message, no tag", "<13>Jan  2 03:04:05 router link down on eth0",
			`{"timestamp":"2026-01-02T03:04:05Z","host":"router","facility":"user","severity":"notice","message":"link down on eth0"}`},
		{"rfc3164 with rfc3339 timestamp (rsyslog)", "<86>2026-12-06T07:10:00.123456+01:00 web01 sudo: pam_unix(sudo:session): session opened",
			`{"timestamp":"2026-12-06T07:10:00.123456+01:00","host":"web01","app":"sudo","facility":"authpriv","severity":"info","message":"pam_unix(sudo:session): session opened"}`},
		{"rfc3164 kernel", "<6>Dec  6 07:10:00 kernel: [  123.456] usb 1-1: new device",
			`{"timestamp":"2026-12-06T07:10:00Z","app":"kernel","facility":"kern","severity":"info","message":"[  123.456] usb 1-1: new device"}`},
		{"rfc3164 empty message", "<13>Dec  6 07:10:00 ",
			`{"timestamp":"2026-12-06T07:10:00Z","facility":"user","severity":"notice","message":""}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m syslogMsg
			require.NoError(t, parseSyslog([]byte(tc.in), &m, clock3164))
			got := appendSyslogJSON(nil, &m)
			require.True(t, json.Valid(got), "%s", got)
			require.Equal(t, tc.want, string(got))
		})
	}
}

func TestParseSyslog_RejectsWhatIsNotSyslog(t *testing.T) {
	for _, in := range []string{
		"",
		"plain text",
		"<>1 - - - - - -",
		"<192>1 - - - - - -",        // PRI beyond 191
		"<013>Dec  6 07:10:00 a: b", // leading zero
		"<13>1 2026-13 h a p m - x", // bad timestamp
		"<13>1 - h a p m",           // header cut short
		"<13>1 - h a p m [unclosed", // structured data unclosed
		`<13>1 - h a p m [id k="v]`, // value unclosed
		"<13>1 - h a p m -x",        // no SP before MSG
		"<13>Dex  6 07:10:00 a: b",  // not a month
		"<13>Dec  6 7:10:00 a: b",   // hour not two digits
		"<13>this has no timestamp", // RFC 3164 without a timestamp
		"<13>1 2026-12-06T07:10:00 h a p m - no zone",
		// Numbers out of range: passed on as timestamps, they broke
		// consumers that parse them.
		"<13>1 2003-13-11T22:14:15Z h a - - - month 13",
		"<13>1 2003-10-00T22:14:15Z h a - - - day 0",
		"<13>1 2003-10-32T22:14:15Z h a - - - day 32",
		"<13>1 2003-10-11T24:14:15Z h a - - - hour 24",
		"<13>1 2003-10-11T22:60:15Z h a - - - minute 60",
		"<13>1 2003-10-11T22:14:61Z h a - - - second 61",
		"<13>1 2003-10-11T22:14:15+24:00 h a - - - offset 24h",
		"<13>2026-13-11T22:14:15Z h a: RFC 3164 with an RFC 3339 time, month 13",
		// A day the year (2026) does not have became another (Mar 1).
		"<13>Feb 29 12:00:00 host app: no Feb 29 in 2026",
		"<13>Apr 31 12:00:00 host app: no Apr 31",
	} {
		var m syslogMsg
		require.Error(t, parseSyslog([]byte(in), &m, clock3164), "%q", in)
	}
}

func FuzzParseRFC5424(f *testing.F) {
	for _, s := range []string{
		"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - 'su root' failed",
		`<165>1 2003-10-11T22:14:15.003Z h evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="App\]"][x y="\\"] msg`,
		"<0>1 - - - - - -",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var m syslogMsg
		if parseRFC5424(in, &m) != nil {
			return
		}
		out := appendSyslogJSON(nil, &m)
		if !json.Valid(out) {
			t.Fatalf("invalid JSON %q from %q", out, in)
		}
		var v map[string]any
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseRFC3164(f *testing.F) {
	for _, s := range []string{
		"<34>Oct 11 22:14:15 mymachine su: 'su root' failed",
		"<13>Dec  6 07:10:00 vm myapp[42]: hello",
		"<30>Dec  6 07:10:00 sshd[1234]: Accepted",
		"<86>2026-12-06T07:10:00.123456+01:00 web01 sudo: x",
		"<13>Jan  2 03:04:05 router link down",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var m syslogMsg
		if parseRFC3164(in, &m, clock3164) != nil {
			return
		}
		out := appendSyslogJSON(nil, &m)
		if !json.Valid(out) {
			t.Fatalf("invalid JSON %q from %q", out, in)
		}
	})
}
