package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every problem of a file is reported at once, each as file:line: path:
// message (issue 8 item 7).
func TestValidate_EveryProblemWithFileLineAndPath(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want string
	}{
		{"bad values of every kind, all listed", `state_dir: /tmp/x
shutdown_timeout: banana
log: {level: loud}
admin: {listen: "8686"}
spool:
  sync: sometimes
  max_bytes: -5
sources:
  - name: app
    type: file
    file:
      include: [/var/log/*.log, "${LOG_DIR}/x.log"]
      start_at: middle
      max_open_files: many
      multiline: {start: "(["}
  - name: app2
    type: fiel
outputs:
  - name: out
    type: http
    http: {url: "ftp://example.com", format: xml}
    file: {dir: /tmp}
  - name: out2
    type: file
    colour: blue
flows:
  - name: main
    sources: [app]
    output: out
    sendr: {}
    aggregation: {max_records: [1], max_buffered_time: 0s}
  - name: big
    sources: app2
    output: nope
    aggregation:
      max_bytes: 2MiB
`, `bad.yaml:2: shutdown_timeout: invalid duration "banana" (want e.g. 500ms, 10s, 5m, 1h)
bad.yaml:3: log.level: unknown "loud" (want debug, info, warn or error)
bad.yaml:4: admin.listen: want HOST:PORT or off: address 8686: missing port in address
bad.yaml:6: spool.sync: must be "always", "interval" or "never", got "sometimes"
bad.yaml:7: spool.max_bytes: invalid byte size "-5" (want e.g. 512, 64KiB, 10MiB, 1GiB)
bad.yaml:12: sources[0].file.include: environment variable LOG_DIR is not set (use ${LOG_DIR:-default} for a default)
bad.yaml:13: sources[0].file.start_at: must be "beginning" or "end", not "middle"
bad.yaml:14: sources[0].file.max_open_files: invalid integer "many"
bad.yaml:15: sources[0].file.multiline.start: error parsing regexp: missing closing ]: ` + "`[`" + `
bad.yaml:17: sources[1].type: unknown "fiel" (want ` + orList(testComponents.SourceNames()) + `)
bad.yaml:21: outputs[0].http.url: scheme "ftp" not supported (want http or https)
bad.yaml:21: outputs[0].http.format: unknown "xml" (want ndjson, json, raw, raw-packed, kafka-rest-v2 or kafka-rest-v3)
bad.yaml:22: outputs[0].file: options of type "file", but type is "http"
bad.yaml:23: outputs[1].file.dir: required (or path)
bad.yaml:25: outputs[1].colour: unknown field "colour" (known: name, type, file)
bad.yaml:30: flows[0].sendr: unknown field "sendr" (did you mean "sender"?)
bad.yaml:31: flows[0].aggregation.max_records: want a single value, not a list
bad.yaml:31: flows[0].aggregation.max_buffered_time: must be positive
bad.yaml:33: flows[1].sources: want a list, not "app2"
bad.yaml:34: flows[1].output: no output named "nope"
bad.yaml:36: flows[1].aggregation.max_bytes: must be between 1KiB and 1MiB (the largest Kinesis record), got 2MiB`},

		// Issue 8 item 1: a 50 KiB aggregate was accepted with 16 KiB
		// spool entries, and dead-lettered after one transient 503.
		{"aggregate and records larger than a spool entry", `state_dir: /tmp/x
spool:
  max_entry_bytes: 16KiB
sources:
  - name: app
    type: file
    file: {include: [/var/log/app.log]}
outputs:
  - name: out
    type: http
    http: {url: "http://127.0.0.1:9/x"}
flows:
  - name: main
    sources: [app]
    output: out
    aggregation:
      max_bytes: 50KiB
`, `bad.yaml:7: sources[0].file.max_record_bytes: 1020KiB does not fit spool.max_entry_bytes (16KiB) with 4KiB for the keys: a record that long would be dead-lettered; at most 12KiB, or raise spool.max_entry_bytes
bad.yaml:17: flows[0].aggregation.max_bytes: 50KiB does not fit spool.max_entry_bytes (16KiB): an aggregate that large would be dead-lettered when it goes to the spool (with spool_bypass, after one failed send); raise spool.max_entry_bytes to at least 51264 bytes or lower aggregation.max_bytes`},

		{"records larger than the output takes", `state_dir: /tmp/x
sources:
  - name: app
    type: file
    file:
      include: [/var/log/app.log]
      max_record_bytes: 4MiB
outputs:
  - name: out
    type: http
    http: {url: "http://127.0.0.1:9/x"}
flows:
  - name: main
    sources: [app]
    output: out
`, `bad.yaml:7: sources[0].file.max_record_bytes: 4MiB is more than the largest record output "out" takes (1MiB) less 4KiB for the partition key and KPL framing: longer records would be dead-lettered; at most 1020KiB`},

		// A leaf with its own UnmarshalYAML (a percentage or "off") was
		// listed twice: once placed, once without file:line and path.
		{"a leaf's own syntax error is listed once, placed", `state_dir: /tmp/x
sources:
  - name: app
    type: file
    file: {include: [/var/log/app.log]}
outputs:
  - name: out
    type: kinesis
    kinesis: {stream: s, region: us-east-1, rate_limit: 5000}
flows:
  - name: main
    sources: [app]
    output: out
`, `bad.yaml:9: outputs[0].kinesis.rate_limit: "5000": want a percentage from 1 to 1000, or off`},

		{"no flows, component without a type", `state_dir: /tmp/x
sources:
  - name: app
    file: {include: [/var/log/app.log]}
  - [not, a, mapping]
`, `bad.yaml: flows: at least one flow is required
bad.yaml:3: sources[0].type: required
bad.yaml:5: sources[1]: want a mapping with name, type and the type's options`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("bad.yaml", []byte(tc.yaml), noEnv, testComponents)
			require.Error(t, err)
			require.Equal(t, tc.want, err.Error())
		})
	}
}

// LoadConfig (agent validate and agent run) checks the files a component
// would load, with their place.
func TestValidate_FilesAreCheckedWithTheirPlace(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600))
	p := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(p, []byte(`state_dir: state
sources:
  - name: app
    type: file
    file: {include: [app.log]}
outputs:
  - name: a
    type: http
    http:
      url: https://example.com/x
      tls: {ca_file: missing.pem}
  - name: b
    type: http
    http:
      url: https://example.com/x
      tls:
        ca_file: ca.txt
        cert_file: cert.pem
        key_file: key.pem
flows:
  - name: main
    sources: [app]
    output: a
`), 0o600))
	_, err := LoadConfig(p, testComponents)
	require.Error(t, err)
	require.Equal(t, `DIR/agent.yaml:11: outputs[0].http.tls.ca_file: open DIR/missing.pem: no such file or directory
DIR/agent.yaml:17: outputs[1].http.tls.ca_file: no PEM certificate found in DIR/ca.txt
DIR/agent.yaml:18: outputs[1].http.tls.cert_file: with tls.key_file: open DIR/cert.pem: no such file or directory`,
		strings.ReplaceAll(err.Error(), dir, "DIR"))
}

// startRun does what `agent run` does until the pipeline is ready: load,
// build, start. It returns nil once the agent ran (and stopped cleanly).
func startRun(t *testing.T, path string) error {
	cfg, err := LoadConfig(path, testComponents)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	a, err := New(cfg, Settings{Components: testComponents, OnReady: cancel})
	if err != nil {
		return err
	}
	if err := a.Run(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// `agent validate` fails exactly when `agent run` would fail to start
// (issue 8): before, the combinations below passed validate and then failed
// at start (or dead-lettered records once running).
func TestValidate_FailsIffRunFailsAtStart(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600))
	base := `state_dir: %s
shutdown_timeout: 100ms
admin: {listen: "off"}
sources:
  - name: app
    type: file
    file: {include: [%s]}
outputs:
  - name: out
    type: http
    http: {url: "http://127.0.0.1:9/x"}
flows:
  - name: main
    sources: [app]
    output: out
`
	cases := []struct {
		name   string
		edit   func(string) string
		wantOK bool
	}{
		{"good", func(s string) string { return s }, true},
		{"good with https and no TLS files", func(s string) string {
			return strings.Replace(s, "http://127.0.0.1:9/x", "https://127.0.0.1:9/x", 1)
		}, true},
		{"aggregate above the record limit", func(s string) string { return s + "    aggregation: {max_bytes: 2MiB}\n" }, false},
		{"aggregate above the spool entry", func(s string) string {
			return strings.Replace(s, "admin:", "spool: {max_entry_bytes: 16KiB}\nadmin:", 1) +
				"    aggregation: {max_bytes: 8KiB}\n"
		}, false},
		{"missing CA file", func(s string) string {
			return strings.Replace(s, `{url: "http://127.0.0.1:9/x"}`, `{url: "https://127.0.0.1:9/x", tls: {ca_file: nope.pem}}`, 1)
		}, false},
		{"CA file without PEM", func(s string) string {
			return strings.Replace(s, `{url: "http://127.0.0.1:9/x"}`, fmt.Sprintf(`{url: "https://127.0.0.1:9/x", tls: {ca_file: %q}}`, notPEM), 1)
		}, false},
		{"admin address without port", func(s string) string { return strings.Replace(s, `{listen: "off"}`, `{listen: "8686"}`, 1) }, false},
		{"bad regular expression", func(s string) string {
			return strings.Replace(s, "file: {include: [", `file: {multiline: {start: "(["}, include: [`, 1)
		}, false},
		{"bad byte size", func(s string) string { return s + "    aggregation: {max_bytes: -5}\n" }, false},
		{"unknown key", func(s string) string { return s + "    colour: red\n" }, false},
		{"state_dir is a file", func(s string) string {
			return strings.Replace(s, "state_dir: ", "state_dir: "+notPEM+" #", 1)
		}, false},
		{"file output directory is a file", func(s string) string {
			return strings.Replace(s, `type: http
    http: {url: "http://127.0.0.1:9/x"}`, fmt.Sprintf(`type: file
    file: {dir: %q}`, filepath.Join(notPEM, "sub")), 1)
		}, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			state := filepath.Join(dir, fmt.Sprintf("state%d", i))
			p := filepath.Join(dir, fmt.Sprintf("agent%d.yaml", i))
			require.NoError(t, os.WriteFile(p, []byte(tc.edit(fmt.Sprintf(base, state, filepath.Join(dir, "app.log")))), 0o600))
			_, verr := LoadConfig(p, testComponents)
			rerr := startRun(t, p)
			require.Equal(t, tc.wantOK, rerr == nil, "run: %v", rerr)
			require.Equal(t, rerr == nil, verr == nil, "validate: %v\nrun: %v", verr, rerr)
		})
	}
}

// An empty file (or one of comments only: everything commented out) says
// so, once, instead of `want a mapping, not ""` and a missing flow.
func TestValidate_EmptyFileSaysItIsEmpty(t *testing.T) {
	for _, data := range []string{"", "\n\n", "# sources:\n#   - name: app\n"} {
		_, err := ParseConfig("agent.yaml", []byte(data), noEnv, testComponents)
		var ce *ConfigError
		require.ErrorAs(t, err, &ce, "%q", data)
		require.Equal(t, "agent.yaml: the file is empty (or only comments): a configuration needs sources, outputs and flows (see agent.yaml.example)", err.Error(), "%q", data)
	}
}

// rotated_dirs names directories on this host: one that exists and is not
// a directory (a file, or a path under a file) is refused by validate,
// run and a reload, with its key, line and source; one that does not exist
// (yet) only warns, since logrotate (createolddir) or the operator may make
// it later. Before, both loaded silently and the rotations there were
// never found.
func TestValidate_RotatedDirsMustBeDirectories(t *testing.T) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	require.NoError(t, os.MkdirAll(filepath.Join(logs, "old"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(logs, "notes.txt"), []byte("x\n"), 0o600))
	write := func(dirs string) string {
		p := filepath.Join(dir, "agent.yaml")
		require.NoError(t, os.WriteFile(p, []byte(`state_dir: state
sources:
  - name: app
    type: file
    file:
      include: [logs/app.log, logs/*/x.log]
      rotated_dirs:
`+dirs+`
outputs:
  - {name: out, type: stdout}
flows:
  - {name: main, sources: [app], output: out}
`), 0o600))
		return p
	}

	// Existing directories, absolute and relative (to logs/): no notice.
	cfg, err := LoadConfig(write("        - old\n        - "+filepath.Join(logs, "old")), testComponents)
	require.NoError(t, err)
	require.Empty(t, cfg.Notices())

	// Not directories: errors, every one with its place.
	_, err = LoadConfig(write("        - old\n        - notes.txt\n        - "+filepath.Join(logs, "notes.txt")+"\n        - notes.txt/old"), testComponents)
	require.Error(t, err)
	require.Equal(t, `DIR/agent.yaml:9: sources[0].file.rotated_dirs[1]: "notes.txt" (DIR/logs/notes.txt) is not a directory: rotations are looked for in a directory (logrotate's olddir); name one (source "app")
DIR/agent.yaml:10: sources[0].file.rotated_dirs[2]: DIR/logs/notes.txt is not a directory: rotations are looked for in a directory (logrotate's olddir); name one (source "app")
DIR/agent.yaml:11: sources[0].file.rotated_dirs[3]: "notes.txt/old" (DIR/logs/notes.txt/old) is under a file, not a directory: rotations are looked for in a directory (logrotate's olddir); name one (source "app")`,
		strings.ReplaceAll(err.Error(), dir, "DIR"))

	// Missing: the file loads, with a warning at the line.
	cfg, err = LoadConfig(write("        - archive\n        - "+filepath.Join(dir, "gone")), testComponents)
	require.NoError(t, err)
	var got []string
	for _, n := range cfg.Notices() {
		got = append(got, strings.ReplaceAll(n.String(), dir, "DIR"))
	}
	require.Equal(t, []string{
		`DIR/agent.yaml:8: sources[0].file.rotated_dirs[0]: warning: no directory "archive" (DIR/logs/archive) (yet): rotations are looked for there once it exists (logrotate makes its olddir only with createolddir) (source "app")`,
		`DIR/agent.yaml:9: sources[0].file.rotated_dirs[1]: warning: no directory DIR/gone (yet): rotations are looked for there once it exists (logrotate makes its olddir only with createolddir) (source "app")`,
	}, got)
}
