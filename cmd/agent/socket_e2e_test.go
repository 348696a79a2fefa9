package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/internal/testport"
)

// shortDir is a directory for Unix sockets (sun_path holds 107 bytes).
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "agent-sock-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// dialWhenUp connects once the agent listens.
func dialWhenUp(t *testing.T, network, address string, p *agentProc) net.Conn {
	t.Helper()
	var c net.Conn
	require.Eventually(t, func() bool {
		var err error
		c, err = net.Dial(network, address)
		return err == nil
	}, time.Minute, 20*time.Millisecond, "the agent never listened on %s: %s", address, p.output())
	return c
}

// sendLines writes lines [from, to) of ~size bytes to c, then closes it.
func sendLines(c net.Conn, from, to, size int, sent *atomic.Int64) error {
	defer c.Close()
	w := bufio.NewWriterSize(c, 64<<10)
	buf := make([]byte, 0, size+16)
	for i := from; i < to; i++ {
		buf = numberedLine(buf[:0], i, size)
		if _, err := w.Write(buf); err != nil {
			return err
		}
		if sent != nil {
			sent.Add(1)
		}
	}
	return w.Flush()
}

// 50 clients at once, half on a Unix stream socket and half over TCP, each
// sending 20k lines (4k under the race detector): every line arrives
// exactly once.
func TestTail_SocketsFiftyConcurrentClientsEveryLineArrivesExactly(t *testing.T) {
	t.Parallel()
	const clients = 50
	per := 20_000
	if raceEnabled {
		per = 4_000 // the race detector makes the agent ~5x slower
	}
	dir := shortDir(t)
	sock := filepath.Join(dir, "app.sock")
	tcp := freeAddr(t)
	s := newSink(t)
	p := startAgent(t, "tail", "unix://"+sock, "tcp://"+tcp, "--to", s.URL(), "--state-dir", filepath.Join(dir, "state"), "--quiet")

	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		network, address := "unix", sock
		if i%2 == 1 {
			network, address = "tcp", tcp
		}
		c := dialWhenUp(t, network, address, p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sendLines(c, i*per, (i+1)*per, 60, nil); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	n := clients * per
	require.Eventually(t, func() bool { return s.distinct() == n }, 3*time.Minute, 100*time.Millisecond,
		"%d of %d lines arrived: %s", s.distinct(), n, tail(p.output(), 2000))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
	requireAllArrived(t, s, n, false)
	_, err := os.Lstat(sock)
	require.ErrorIs(t, err, os.ErrNotExist, "the socket file is removed on a clean stop")
}

// A full spool with when_full: block stops reading the socket: the client
// blocks in its writes, and resumes when the destination is back; nothing
// is lost.
func TestRun_SocketSpoolFullClientBlocksAndResumesNothingLost(t *testing.T) {
	t.Parallel()
	const n = 100_000 // ~10 MB against a 4 MiB spool
	dir := shortDir(t)
	sock := filepath.Join(dir, "app.sock")
	s := newSink(t)
	s.stop()
	admin := freeAddr(t)
	cfg := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`
state_dir: %s
admin: {listen: %q}
spool: {max_bytes: 4MiB, segment_bytes: 1MiB, when_full: block}
sources:
  - name: app
    type: socket
    socket: {listen: "unix://%s"}
outputs:
  - name: sink
    type: http
    http: {url: %q}
flows:
  - name: main
    sources: [app]
    output: sink
`, filepath.Join(dir, "state"), admin, sock, s.URL())), 0o600))
	p := startAgent(t, "run", "-c", cfg)
	c := dialWhenUp(t, "unix", sock, p)
	var sent atomic.Int64
	done := make(chan error, 1)
	go func() { done <- sendLines(c, 0, n, 100, &sent) }()

	require.Eventually(t, func() bool { return metric(admin, "agent_spool_blocked_appends") > 0 }, time.Minute, 50*time.Millisecond,
		"the spool never filled: %s", tail(p.output(), 2000))
	// The client is blocked: it stops making progress well short of n.
	time.Sleep(time.Second)
	before := sent.Load()
	time.Sleep(time.Second)
	require.Equal(t, before, sent.Load(), "the client's writes must block while the spool is full")
	require.Less(t, before, int64(n))
	select {
	case err := <-done:
		t.Fatalf("the client finished while the spool was full: %v", err)
	default:
	}
	require.Equal(t, float64(1), metric(admin, "agent_socket_open_connections"))

	s.start()
	require.NoError(t, <-done)
	require.Eventually(t, func() bool { return s.distinct() == n }, 2*time.Minute, 100*time.Millisecond)
	require.Zero(t, metric(admin, "agent_socket_dropped_records_total"))
	require.Equal(t, float64(n), metric(admin, "agent_socket_records_total"))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
	requireAllArrived(t, s, n, true)
}

// util-linux logger, through the real binary: `agent tail unix://... --format
// syslog` prints each message as a JSON object.
func TestTail_LoggerToUnixSocketWithFormatSyslog(t *testing.T) {
	t.Parallel()
	logger, err := exec.LookPath("logger")
	require.NoError(t, err, "util-linux logger is needed (apt-get install bsdutils)")
	dir := shortDir(t)
	sock := filepath.Join(dir, "log.sock")
	p := startAgent(t, "tail", "unix://"+sock, "--format", "syslog")
	dialWhenUp(t, "unix", sock, p).Close()
	out, err := exec.Command(logger, "-u", sock, "--socket-errors=on", "--rfc3164", "-p", "mail.notice", "-t", "postfix/smtpd", "--id=999", "connect from unknown[192.0.2.7]").CombinedOutput()
	require.NoError(t, err, "%s", out)
	want := `"app":"postfix/smtpd","procid":"999","facility":"mail","severity":"notice","message":"connect from unknown[192.0.2.7]"}`
	require.Eventually(t, func() bool { return strings.Contains(p.output(), want) }, time.Minute, 20*time.Millisecond, "%s", p.output())
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
}

// A socket's records still in memory at the end of shutdown_timeout, which
// the full spool had no room for, cannot be read again: the stop must say
// they are lost and count them, not promise them "after the next start".
func TestTail_SocketRecordsTheFullSpoolCouldNotTakeAtStopAreReportedLost(t *testing.T) {
	t.Parallel()
	dest := freeAddr(t) // nothing listens: the destination is down
	in := freeAddr(t)
	p := startAgent(t, "tail", "tcp://"+in, "--state-dir", filepath.Join(t.TempDir(), "state"),
		"--spool-max-bytes", "1MiB", "--to", "http://"+dest+"/ingest")
	var c net.Conn
	p.waitFor(t, 30*time.Second, func() bool {
		var err error
		c, err = net.Dial("tcp", in)
		return err == nil
	}, "the socket listens")
	defer c.Close()
	line := []byte("L " + strings.Repeat("y", 100) + "\n")
	for i := 0; i < 40000; i++ { // 4 MiB: fills the 1 MiB spool, then the client blocks
		_ = c.SetWriteDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write(line); err != nil {
			break
		}
	}
	p.waitFor(t, 30*time.Second, func() bool { return strings.Contains(p.output(), "spool: full") }, "the spool fills")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	p.wait(t, 60*time.Second)
	out := p.output()
	require.Contains(t, out, "they are lost", out)
	require.Regexp(t, `lost_records=[1-9]`, out)
	require.NotRegexp(t, `unspooled_records=[1-9]`, out, "socket records are not promised for the next start")
}

// A socket that cannot listen is named once, with what failed: it said
// `source tcp://…: socket source "tcp://…": listen tcp …`.
func TestTail_SocketThatCannotListenIsNamedOnce(t *testing.T) {
	t.Parallel()
	taken := testport.Listen(t)
	defer taken.Close()
	addr := "tcp://" + taken.Addr().String()
	_, errOut, code := runBin(t, "tail", addr, "--to", "blackhole:")
	require.Equal(t, 1, code, errOut)
	require.Equal(t, "agent tail: source "+addr+": socket: listen tcp "+taken.Addr().String()+": bind: address already in use\n", errOut)
}

// A syslog header whose time cannot be (month 13, Feb 29 of 2026's kind)
// is passed on raw, as any record that does not parse: it came out as a
// JSON object with "timestamp":"2003-13-45T99:14:15Z", or another day.
func TestTail_SyslogImpossibleTimestampsArePassedRaw(t *testing.T) {
	t.Parallel()
	dir := shortDir(t)
	sock := filepath.Join(dir, "log.sock")
	p := startAgent(t, "tail", "unixgram://"+sock, "--format", "syslog")
	var c net.Conn
	require.Eventually(t, func() bool {
		var err error
		c, err = net.Dial("unixgram", sock)
		return err == nil
	}, time.Minute, 10*time.Millisecond, "the agent does not listen: %s", p.output())
	defer c.Close()
	for _, m := range []string{
		"<13>1 2003-13-45T99:14:15Z h a - - - bad date",
		"<13>Apr 31 12:00:00 host app: no such day",
		"<13>1 2003-10-11T22:14:15Z h a - - - good",
	} {
		_, err := c.Write([]byte(m))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return strings.Contains(p.output(), `"message":"good"}`) }, time.Minute, 20*time.Millisecond, "%s", p.output())
	out := p.output()
	require.Contains(t, out, "<13>1 2003-13-45T99:14:15Z h a - - - bad date\n")
	require.Contains(t, out, "<13>Apr 31 12:00:00 host app: no such day\n")
	require.NotContains(t, out, `"timestamp":"2003-13-45`)
	require.NotContains(t, out, `-05-01T12:00:00`)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.wait(t, time.Minute), p.output())
}
