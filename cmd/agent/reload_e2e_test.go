package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/internal/testport"
)

// The reload check, through the binary: while 500k numbered lines
// are shipped, a reload changes the file source's glob (a second file is
// followed from then on) and the output's URL: every line arrives at one
// URL or the other. The other flow, unchanged, is not touched: the socket
// client connected before the reload keeps sending on its connection, and
// its output's HTTP connection is the one it had.
func TestReload_GlobAndURLChangeWhileShipping_NothingLost_OtherFlowUntouched(t *testing.T) {
	t.Parallel()
	n := 500_000
	if raceEnabled {
		n = 100_000
	}
	half := n / 2
	const sockFrom = 10_000_000 // the socket's line numbers
	const sockLines = 20_000
	dir := shortDir(t)
	sa, sb, sc := newSink(t), newSink(t), newSink(t)
	admin, sockAddr := freeAddr(t), freeAddr(t)
	config := func(url string, globs ...string) string {
		var include string
		for _, g := range globs {
			include += fmt.Sprintf("%q, ", filepath.Join(dir, g))
		}
		return fmt.Sprintf(`
state_dir: %s
shutdown_timeout: 5s
admin: {listen: %q}
sources:
  - name: app
    type: file
    file: {include: [%s], start_at: beginning}
  - name: sock
    type: socket
    socket: {listen: "tcp://%s"}
outputs:
  - name: web
    type: http
    http: {url: %q}
  - name: sockweb
    type: http
    http: {url: %q}
flows:
  - name: files
    sources: [app]
    output: web
  - name: sockets
    sources: [sock]
    output: sockweb
    sender: {concurrency: 1}
`, filepath.Join(dir, "state"), admin, include, sockAddr, url, sc.URL())
	}
	cfg := writeConfig(t, dir, config(sa.URL(), "a-*.log"))
	p := startAgent(t, "run", "-c", cfg)

	// Lines [0, half) go to a-1.log while the agent ships them.
	var writers sync.WaitGroup
	writeChunks := func(name string, from, to int) {
		for i := from; i < to; i += 5000 {
			writeLog(t, filepath.Join(dir, name), i, min(i+5000, to), 100)
		}
	}
	writers.Go(func() { writeChunks("a-1.log", 0, half) })

	// A socket client sends half its lines before the reload.
	conn := dialWhenUp(t, "tcp", sockAddr, p)
	defer conn.Close()
	w := bufio.NewWriter(conn)
	send := func(from, to int) {
		buf := make([]byte, 0, 128)
		for i := from; i < to; i++ {
			buf = numberedLine(buf[:0], i, 100)
			_, err := w.Write(buf)
			require.NoError(t, err, "the socket connection broke")
		}
		require.NoError(t, w.Flush(), "the socket connection broke")
	}
	send(sockFrom, sockFrom+sockLines/2)
	p.waitFor(t, time.Minute, func() bool { return sa.distinct() > n/10 && sc.distinct() == sockLines/2 }, "lines did not reach the first URL")
	sockConns := sc.conns.Load()
	require.Positive(t, sockConns)

	writeConfig(t, dir, config(sb.URL(), "a-*.log", "b-*.log"))
	out, err := agentCmd("reload", "--admin", admin).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, "reloaded\n", string(out))
	arrivedA := sa.distinct()

	// Lines [half, n) go to b-1.log, followed since the reload.
	writers.Go(func() { writeChunks("b-1.log", half, n) })
	send(sockFrom+sockLines/2, sockFrom+sockLines)
	writers.Wait()

	arrived := func() int {
		k := 0
		for i := range n {
			if sa.count(i)+sb.count(i) > 0 {
				k++
			}
		}
		return k
	}
	p.waitFor(t, 3*time.Minute, func() bool { return arrived() == n && sc.distinct() == sockLines }, "lines lost across the reload")
	require.Equal(t, sockConns, sc.conns.Load(), "the unchanged flow's output opened a new connection")
	require.Equal(t, 1.0, metric(admin, `agent_socket_connections_total{source="sock"}`), "the socket client had to reconnect")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())

	_, dupsA, badA := sa.check(n)
	_, dupsB, badB := sb.check(n)
	require.Zero(t, badA+badB)
	require.Less(t, sb.distinct(), n, "the new URL got only what was read after the reload")
	require.GreaterOrEqual(t, sb.distinct(), n-half)
	log := p.stderr.String()
	require.Regexp(t, regexp.MustCompile(`configuration reloaded.*kept=\[sockets\].*rebuilt=\[files\]`), log)
	// At-least-once allows duplicates; the reload lets the sends in
	// flight finish, so there are few or none.
	t.Logf("%d lines: %d at the first URL by the reload, %d at the first and %d at the second in all, sent twice %d; socket lines %d on %d connection(s)",
		n, arrivedA, sa.distinct(), sb.distinct(), dupsA+dupsB+sa.distinct()+sb.distinct()-n, sc.distinct(), sc.conns.Load())
}

// agent status and agent reload -c read only admin.listen from the file: a
// ${VAR} the service's environment sets (systemd EnvironmentFile) but the
// operator's shell does not must not stop them, and a bad file is the running
// agent's to refuse (exit 1 with its file:line problems; it keeps running),
// not a local failure that never asked it.
func TestReload_ConfigNeedsTheServiceEnvironment_StatusAndReloadAskTheAgent(t *testing.T) {
	dir := shortDir(t)
	admin := freeAddr(t)
	cfg := filepath.Join(dir, "agent.yaml")
	good := fmt.Sprintf(`
state_dir: ${AGENT_QA_STATE_DIR}
admin: {listen: %q}
sources:
  - {name: app, type: file, file: {include: [%q]}}
outputs:
  - {name: out, type: blackhole}
flows:
  - {name: main, sources: [app], output: out}
`, admin, filepath.Join(dir, "*.log"))
	require.NoError(t, os.WriteFile(cfg, []byte(good), 0o644))
	t.Setenv("AGENT_QA_STATE_DIR", filepath.Join(dir, "state"))
	p := startAgent(t, "run", "-c", cfg)
	require.NoError(t, os.Unsetenv("AGENT_QA_STATE_DIR")) // the operator's shell
	p.waitFor(t, time.Minute, func() bool { return metric(admin, "agent_config_reloads_total") >= 0 }, "the agent did not start")

	out, errOut, code := runBin(t, "status", "-c", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "main")

	require.NoError(t, os.WriteFile(cfg, []byte(good+"bogus_key: 1\n"), 0o644))
	_, errOut, code = runBin(t, "reload", "-c", cfg)
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "refused, the running configuration stays")
	require.Regexp(t, `agent\.yaml:\d+: bogus_key`, errOut)
	require.NotContains(t, errOut, "AGENT_QA_STATE_DIR", "the agent's environment has it")
	require.Equal(t, 1.0, metric(admin, `agent_config_reloads_total{result="failed"}`))

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
}

// agent status counts what an output delivered over every flow sending to
// it, and across reloads that replace their senders, as its Prometheus
// counter does (it showed one flow's sender, from its last reload).
func TestReload_StatusCountsAnOutputOverItsFlowsAndAcrossReloads(t *testing.T) {
	t.Parallel()
	dir := shortDir(t)
	admin := freeAddr(t)
	cfg := filepath.Join(dir, "agent.yaml")
	write := func(glob string) {
		require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`
state_dir: %q
admin: {listen: %q}
sources:
  - {name: a, type: file, file: {include: [%q], start_at: beginning}}
  - {name: b, type: file, file: {include: [%q], start_at: beginning}}
outputs:
  - {name: out, type: blackhole}
flows:
  - {name: fa, sources: [a], output: out}
  - {name: fb, sources: [b], output: out}
`, filepath.Join(dir, "state"), admin, filepath.Join(dir, "a*.log"), filepath.Join(dir, glob))), 0o644))
	}
	lines := func(name string, from, to int) {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		require.NoError(t, err)
		for i := from; i < to; i++ {
			_, err = fmt.Fprintf(f, "line %d\n", i)
			require.NoError(t, err)
		}
		require.NoError(t, f.Close())
	}
	sent := func() int64 {
		out, _, code := runBin(t, "status", "--admin", admin, "--json")
		if code != 0 {
			return -1
		}
		var st struct {
			Outputs []struct {
				Name        string `json:"name"`
				RecordsSent int64  `json:"records_sent"`
			} `json:"outputs"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &st))
		require.Len(t, st.Outputs, 1)
		return st.Outputs[0].RecordsSent
	}
	lines("a.log", 0, 100)
	lines("b.log", 0, 50)
	write("b*.log")
	p := startAgent(t, "run", "-c", cfg)
	p.waitFor(t, time.Minute, func() bool { return metric(admin, "agent_output_records_sent_total") == 150 }, "the lines were not sent")
	require.EqualValues(t, 150, sent(), "both flows' records")

	write("b*.txt") // flow fb is rebuilt: a new sender
	_, errOut, code := runBin(t, "reload", "--admin", admin)
	require.Equal(t, 0, code, errOut)
	lines("b.txt", 0, 10)
	p.waitFor(t, time.Minute, func() bool { return metric(admin, "agent_output_records_sent_total") == 160 }, "the new lines were not sent")
	require.EqualValues(t, 160, sent(), "across the reload")

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
}

// A stop signal during a reload does not change its answer: agent reload
// says "reloaded" when the log says the configuration was reloaded (it
// answered "refused ... the agent is stopping" while the reload went on and
// was applied).
func TestReload_StopSignalDuringAReload_TheAnswerIsWhatHappened(t *testing.T) {
	t.Parallel()
	dir := shortDir(t)
	admin := freeAddr(t)
	// A destination that holds every request: the reload waits for the
	// send in flight (up to shutdown_timeout) before the flow stops.
	var requests atomic.Int64
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(func() { close(release); hang.Close() })
	cfg := filepath.Join(dir, "agent.yaml")
	write := func(glob string) {
		require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`
state_dir: %q
shutdown_timeout: 3s
admin: {listen: %q}
sources:
  - {name: app, type: file, file: {include: [%q], start_at: beginning}}
outputs:
  - {name: out, type: http, http: {url: %q}}
flows:
  - {name: main, sources: [app], output: out}
`, filepath.Join(dir, "state"), admin, filepath.Join(dir, glob), hang.URL)), 0o644))
	}
	writeLog(t, filepath.Join(dir, "a.log"), 0, 1000, 100)
	write("*.log")
	p := startAgent(t, "run", "-c", cfg)
	p.waitFor(t, time.Minute, func() bool { return requests.Load() > 0 }, "no request was sent")

	write("*.txt") // the flow is rebuilt
	type answer struct {
		out  string
		code int
	}
	answered := make(chan answer, 1)
	go func() {
		cmd := agentCmd("reload", "--admin", admin)
		out, _ := cmd.CombinedOutput()
		answered <- answer{string(out), cmd.ProcessState.ExitCode()}
	}()
	time.Sleep(time.Second) // the reload waits for the flow to stop
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	var a answer
	select {
	case a = <-answered:
	case <-time.After(time.Minute):
		t.Fatal("agent reload did not return")
	}
	p.wait(t, time.Minute)
	applied := strings.Contains(p.output(), "configuration reloaded")
	if applied {
		require.Equal(t, 0, a.code, "the log says reloaded, agent reload said:\n%s", a.out)
	} else {
		require.Equal(t, 1, a.code, "agent reload said:\n%s\nlog:\n%s", a.out, p.output())
	}
}

// A reload that moves a socket source to an address it cannot listen on
// (another program has it) is refused before anything stops, like any
// source that cannot be built: the agent goes on with its old listener.
// It used to answer "reloaded" and then stop the agent (exit 1) when the
// new flow's source failed to listen, and under systemd fail again at
// every restart. A reload to a free address moves the listener.
func TestReload_SocketAddressInUseIsRefusedTheAgentKeepsListening(t *testing.T) {
	t.Parallel()
	dir := shortDir(t)
	admin, first, free := freeAddr(t), freeAddr(t), freeAddr(t)
	taken := testport.Listen(t) // another program's
	defer taken.Close()
	out := filepath.Join(dir, "out")
	config := func(listen string) string {
		return fmt.Sprintf(`
state_dir: %s
admin: {listen: %q}
sources:
  - {name: sock, type: socket, socket: {listen: "tcp://%s"}}
outputs:
  - {name: out, type: file, file: {dir: %q, encoding: text}}
flows:
  - {name: main, sources: [sock], output: out}
`, filepath.Join(dir, "state"), admin, listen, out)
	}
	cfg := writeConfig(t, dir, config(first))
	p := startAgent(t, "run", "-c", cfg)
	p.waitFor(t, time.Minute, func() bool { return metric(admin, "agent_config_reloads_total") >= 0 }, "the agent did not start")
	send := func(addr, line string) {
		t.Helper()
		c := dialWhenUp(t, "tcp", addr, p)
		_, err := c.Write([]byte(line + "\n"))
		require.NoError(t, err)
		require.NoError(t, c.Close())
	}
	arrived := func(line string) func() bool {
		return func() bool {
			b, _ := os.ReadFile(filepath.Join(out, "out.ndjson"))
			return strings.Contains(string(b), line+"\n")
		}
	}

	writeConfig(t, dir, config(taken.Addr().String()))
	_, errOut, code := runBin(t, "reload", "-c", cfg)
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "refused, the running configuration stays")
	require.Contains(t, errOut, "flow main: source sock: listen tcp "+taken.Addr().String())
	require.Contains(t, errOut, "address already in use")
	send(first, "still-listening")
	p.waitFor(t, time.Minute, arrived("still-listening"), "the old listener stopped")
	status, errOut, code := runBin(t, "status", "--admin", admin)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, status, "LAST RELOAD REFUSED")

	writeConfig(t, dir, config(free))
	_, errOut, code = runBin(t, "reload", "-c", cfg)
	require.Equal(t, 0, code, errOut)
	send(free, "moved")
	p.waitFor(t, time.Minute, arrived("moved"), "the new listener took nothing")
	_, err := net.Dial("tcp", first)
	require.Error(t, err, "the old address still listens")

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
}

// agent reload to a configuration that adds a source on the wildcard of a
// port a running source listens on (127.0.0.1:PORT) is refused as a config
// problem naming both sources, before anything stops: the running source
// goes on receiving. It was refused only once the new source failed to
// bind, told to restart the agent, which then failed at start.
func TestReload_WildcardBesideAnAddressOfItsPortIsRefused(t *testing.T) {
	t.Parallel()
	dir := shortDir(t)
	admin, local := freeAddr(t), freeAddr(t)
	_, port, err := net.SplitHostPort(local)
	require.NoError(t, err)
	out := filepath.Join(dir, "out")
	config := func(all string) string { // all: the wildcard source's listen, or none
		sources, names := "", "local"
		if all != "" {
			sources, names = fmt.Sprintf(`  - {name: all, type: socket, socket: {listen: %q}}`, all), "local, all"
		}
		return fmt.Sprintf(`
state_dir: %s
admin: {listen: %q}
sources:
  - {name: local, type: socket, socket: {listen: "tcp://%s"}}
%s
outputs:
  - {name: out, type: file, file: {dir: %q, encoding: text}}
flows:
  - {name: main, sources: [%s], output: out}
`, filepath.Join(dir, "state"), admin, local, sources, out, names)
	}
	cfg := writeConfig(t, dir, config(""))
	p := startAgent(t, "run", "-c", cfg)
	p.waitFor(t, time.Minute, func() bool { return metric(admin, "agent_config_reloads_total") >= 0 }, "the agent did not start")

	writeConfig(t, dir, config("tcp://0.0.0.0:"+port))
	_, errOut, code := runBin(t, "reload", "-c", cfg)
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, fmt.Sprintf(`sources[1].socket.listen: source "all" cannot listen beside source "local": tcp://0.0.0.0:%s and tcp://%s are one port`, port, local))
	c := dialWhenUp(t, "tcp", local, p)
	_, err = c.Write([]byte("still-listening\n"))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	p.waitFor(t, time.Minute, func() bool {
		b, _ := os.ReadFile(filepath.Join(out, "out.ndjson"))
		return strings.Contains(string(b), "still-listening\n")
	}, "the running source stopped")

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
}

// A socket group that does not exist is a config problem that validate and
// a reload report (file:line), as a missing TLS file is: a reload to it was
// accepted, then the new source failed to start and stopped the agent.
func TestReload_SocketGroupThatDoesNotExistIsRefused(t *testing.T) {
	t.Parallel()
	dir := shortDir(t)
	admin := freeAddr(t)
	config := func(group string) string {
		return fmt.Sprintf(`
state_dir: %s
admin: {listen: %q}
sources:
  - {name: sock, type: socket, socket: {listen: "unix://%s", group: %q}}
outputs:
  - {name: out, type: blackhole}
flows:
  - {name: main, sources: [sock], output: out}
`, filepath.Join(dir, "state"), admin, filepath.Join(dir, "s.sock"), group)
	}
	cfg := writeConfig(t, dir, config(""))
	p := startAgent(t, "run", "-c", cfg)
	p.waitFor(t, time.Minute, func() bool { return metric(admin, "agent_config_reloads_total") >= 0 }, "the agent did not start")

	writeConfig(t, dir, config("no-such-group-qa3"))
	_, errOut, code := runBin(t, "validate", "-c", cfg)
	require.Equal(t, 2, code, errOut)
	require.Contains(t, errOut, `agent.yaml:5: sources[0].socket.group: no group "no-such-group-qa3" on this host`)
	_, errOut, code = runBin(t, "reload", "-c", cfg)
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, `sources[0].socket.group: no group "no-such-group-qa3" on this host`)
	time.Sleep(200 * time.Millisecond) // a stop would have begun
	_, errOut, code = runBin(t, "status", "--admin", admin)
	require.Equal(t, 0, code, errOut)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
}

// A reload that removes a flow whose destination is down says, to whoever
// ran agent reload, what the flow left and where: its backlog leaves agent
// status with it, and "reloaded" alone read as nothing was left behind.
func TestReload_RemovedFlowWithABacklogIsNamedWithItsSpoolDir(t *testing.T) {
	t.Parallel()
	dir := shortDir(t)
	admin, sock, down := freeAddr(t), freeAddr(t), freeAddr(t) // nothing listens on down
	base := fmt.Sprintf(`
state_dir: %s
shutdown_timeout: 1s
admin: {listen: %q}
sources:
  - {name: keep, type: socket, socket: {listen: "unix://%s"}}
`, filepath.Join(dir, "state"), admin, filepath.Join(dir, "keep.sock"))
	both := base + fmt.Sprintf(`  - {name: sock, type: socket, socket: {listen: "tcp://%s"}}
outputs:
  - {name: out, type: blackhole}
  - {name: down, type: http, http: {url: "http://%s/x"}}
flows:
  - {name: main, sources: [keep], output: out}
  - {name: gone, sources: [sock], output: down}
`, sock, down)
	cfg := writeConfig(t, dir, both)
	p := startAgent(t, "run", "-c", cfg)
	p.waitFor(t, time.Minute, func() bool { return metric(admin, "agent_config_reloads_total") >= 0 }, "the agent did not start")
	c := dialWhenUp(t, "tcp", sock, p)
	for i := range 100 {
		_, err := fmt.Fprintf(c, "line %d\n", i)
		require.NoError(t, err)
	}
	require.NoError(t, c.Close())
	p.waitFor(t, time.Minute, func() bool { return metric(admin, `agent_spool_entries{flow="gone"}`) >= 1 }, "nothing reached the spool")

	writeConfig(t, dir, base+`outputs:
  - {name: out, type: blackhole}
flows:
  - {name: main, sources: [keep], output: out}
`)
	out, errOut, code := runBin(t, "reload", "-c", cfg)
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `^reloaded\nflow gone was removed before it delivered everything \(shutdown_timeout\): \d+ spool entries stay in `+
		regexp.QuoteMeta(filepath.Join(dir, "state", "spool", "gone"))+`, sent if a flow named gone comes back \(deleting the directory discards them\)\n$`, out)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
}

// rotated_dirs is checked by validate, a reload and run with one rule: a
// path that is a file is refused (file:line, key, source, path), and the
// running agent keeps its config; a directory that does not exist (yet)
// is a warning, printed by validate and shown by reload, logged by run.
func TestReload_RotatedDirsThatAreNotDirectories(t *testing.T) {
	t.Parallel()
	dir := shortDir(t)
	admin := freeAddr(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x\n"), 0o600))
	config := func(rotated string) string {
		return fmt.Sprintf(`
state_dir: %s
admin: {listen: %q}
sources:
  - name: app
    type: file
    file:
      include: [%q]
      rotated_dirs: [%s]
outputs:
  - {name: out, type: blackhole}
flows:
  - {name: main, sources: [app], output: out}
`, filepath.Join(dir, "state"), admin, filepath.Join(dir, "*.log"), rotated)
	}
	const missing = `agent.yaml:9: sources[0].file.rotated_dirs[0]: warning: no directory "old" (DIR/old) (yet): rotations are looked for there once it exists`
	cfg := writeConfig(t, dir, config("old"))
	_, errOut, code := runBin(t, "validate", "-c", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, strings.ReplaceAll(errOut, dir, "DIR"), missing)
	require.Contains(t, errOut, `(source "app")`)
	p := startAgent(t, "run", "-c", cfg)
	p.waitFor(t, time.Minute, func() bool { return metric(admin, "agent_config_reloads_total") >= 0 }, "the agent did not start")
	require.Contains(t, p.output(), "no directory")

	writeConfig(t, dir, config("notes.txt"))
	const notDir = `agent.yaml:9: sources[0].file.rotated_dirs[0]: "notes.txt" (DIR/notes.txt) is not a directory`
	_, errOut, code = runBin(t, "validate", "-c", cfg)
	require.Equal(t, 2, code, errOut)
	require.Contains(t, strings.ReplaceAll(errOut, dir, "DIR"), notDir)
	_, errOut, code = runBin(t, "reload", "-c", cfg)
	require.Equal(t, 1, code, errOut)
	require.Contains(t, strings.ReplaceAll(errOut, dir, "DIR"), `sources[0].file.rotated_dirs[0]: "notes.txt" (DIR/notes.txt) is not a directory`)
	_, errOut, code = runBin(t, "status", "--admin", admin)
	require.Equal(t, 0, code, errOut)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
}
