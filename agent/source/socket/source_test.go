package socket

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/internal/testport"
)

func TestParseListen(t *testing.T) {
	tests := []struct{ in, network, address, err string }{
		{in: "unix:///run/app.sock", network: "unix", address: "/run/app.sock"},
		{in: "unixgram:///run/app.dgram", network: "unixgram", address: "/run/app.dgram"},
		{in: "tcp://127.0.0.1:5140", network: "tcp", address: "127.0.0.1:5140"},
		{in: "tcp://:5140", network: "tcp", address: "127.0.0.1:5140"}, // loopback unless named
		{in: "udp://[::1]:514", network: "udp", address: "[::1]:514"},
		{in: "tcp://0.0.0.0:5140", network: "tcp", address: "0.0.0.0:5140"},
		{in: "unix://run/app.sock", err: "absolute"},
		{in: "unix:run.sock", err: "want unix:///ABSOLUTE/PATH"},
		{in: "tcp://127.0.0.1", err: "want tcp://HOST:PORT"},
		{in: "tcp://127.0.0.1:99999", err: "bad port"},
		{in: "/run/app.sock", err: "want a URL"},
		{in: "http://x:1", err: `"http://x:1": scheme "http" is not one of unix, unixgram, tcp, udp: want unix:///PATH, unixgram:///PATH, tcp://HOST:PORT or udp://HOST:PORT`},
		{in: "127.0.0.1:5140", err: `"127.0.0.1:5140": want unix:///PATH, unixgram:///PATH, tcp://HOST:PORT or udp://HOST:PORT (first path segment in URL cannot contain colon)`},
		{in: "tcp://127.0.0.1:51x", err: `"tcp://127.0.0.1:51x": want unix:///PATH, unixgram:///PATH, tcp://HOST:PORT or udp://HOST:PORT (invalid port ":51x" after host)`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			a, err := parseListen(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.network, a.network)
			require.Equal(t, tc.address, a.address)
		})
	}
}

func TestConfig_ValidateReportsEveryProblem(t *testing.T) {
	c := Config{Format: "xml", Framing: "cobs", Mode: "rw", OnOversize: "panic", OnMaxConnections: "queue", IdleTimeout: -1}
	err := c.Validate()
	for _, key := range []string{"listen: required", "format:", "framing:", "mode:", "max_record_bytes:", "on_oversize:", "max_connections:", "on_max_connections:", "idle_timeout:", "datagram_queue:"} {
		require.ErrorContains(t, err, key)
	}
	require.NoError(t, testConfig("unix:///x.sock").Validate())
}

func TestSource_UnixStreamSocketFileModeAndRemovalOnStop(t *testing.T) {
	path := sockPath(t, "app.sock")
	cfg := testConfig("unix://" + path)
	cfg.Mode = "0620"
	r := start(t, cfg)

	fi, err := os.Lstat(path)
	require.NoError(t, err)
	require.NotZero(t, fi.Mode()&os.ModeSocket)
	require.Equal(t, os.FileMode(0o620), fi.Mode().Perm())

	c := dial(t, "unix", path)
	_, err = io.WriteString(c, "one\r\ntwo\n\nthree\n")
	require.NoError(t, err)
	require.Equal(t, []string{"one", "two", "three"}, r.k.waitFor(t, 3))
	require.EqualValues(t, 1, r.src.Stats().Dropped[DropEmpty], "the empty line")
	require.EqualValues(t, 1, r.src.Stats().Connections)

	require.NoError(t, r.stop())
	_, err = os.Lstat(path)
	require.ErrorIs(t, err, os.ErrNotExist, "the socket file is removed on a clean stop")
}

func TestSource_StaleSocketIsReplaced(t *testing.T) {
	t.Run("unix", func(t *testing.T) {
		path := sockPath(t, "stale.sock")
		ln, err := net.Listen("unix", path)
		require.NoError(t, err)
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		require.NoError(t, ln.Close()) // a crash leaves the file; nobody listens
		_, err = os.Lstat(path)
		require.NoError(t, err)

		r := start(t, testConfig("unix://"+path))
		c := dial(t, "unix", path)
		_, err = io.WriteString(c, "fresh\n")
		require.NoError(t, err)
		require.Equal(t, []string{"fresh"}, r.k.waitFor(t, 1))
	})
	t.Run("unixgram", func(t *testing.T) {
		path := sockPath(t, "stale.dgram")
		pc, err := net.ListenPacket("unixgram", path)
		require.NoError(t, err)
		require.NoError(t, pc.Close()) // the file stays
		_, err = os.Lstat(path)
		require.NoError(t, err)

		r := start(t, testConfig("unixgram://"+path))
		c := dial(t, "unixgram", path)
		_, err = io.WriteString(c, "fresh")
		require.NoError(t, err)
		require.Equal(t, []string{"fresh"}, r.k.waitFor(t, 1))
	})
}

func TestSource_LiveSocketOrOtherFileIsAnErrorAndKept(t *testing.T) {
	t.Run("live socket", func(t *testing.T) {
		path := sockPath(t, "live.sock")
		ln, err := net.Listen("unix", path)
		require.NoError(t, err)
		defer ln.Close()
		go func() { // the other process answers the probe
			if c, err := ln.Accept(); err == nil {
				c.Close()
			}
		}()
		src, err := New(testConfig("unix://"+path), Settings{Name: "s"})
		require.NoError(t, err)
		err = src.Run(t.Context(), (&collector{}).emit)
		require.ErrorContains(t, err, "another process listens")
		_, err = os.Lstat(path)
		require.NoError(t, err)
	})
	t.Run("regular file", func(t *testing.T) {
		path := sockPath(t, "file.sock")
		require.NoError(t, os.WriteFile(path, []byte("precious"), 0o600))
		for _, scheme := range []string{"unix", "unixgram"} {
			src, err := New(testConfig(scheme+"://"+path), Settings{Name: "s"})
			require.NoError(t, err)
			err = src.Run(t.Context(), (&collector{}).emit)
			require.ErrorContains(t, err, "exists and is not a socket")
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, "precious", string(b), "never deleted")
		}
	})
}

func TestSource_PartialLineAtDisconnectIsDeliveredAndCounted(t *testing.T) {
	path := sockPath(t, "p.sock")
	r := start(t, testConfig("unix://"+path))
	c := dial(t, "unix", path)
	_, err := io.WriteString(c, "whole\nhalf a li")
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.Equal(t, []string{"whole", "half a li"}, r.k.waitFor(t, 2))
	require.Eventually(t, func() bool { return r.src.Stats().PartialRecords == 1 }, 10*time.Second, 5*time.Millisecond)
}

func TestSource_HalfClosedConnectionDeliversEverything(t *testing.T) {
	r := start(t, testConfig("tcp://127.0.0.1:0"))
	c := dial(t, "tcp", r.src.Addr().String())
	var want []string
	for i := range 1000 {
		want = append(want, fmt.Sprintf("line %d", i))
	}
	_, err := io.WriteString(c, strings.Join(want, "\n")+"\n")
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	// The source closes its end once it read ours: the client sees EOF.
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := c.Read(make([]byte, 1))
	require.Equal(t, 0, n)
	require.ErrorIs(t, err, io.EOF)
	require.Equal(t, want, r.k.waitFor(t, 1000))
	require.Zero(t, r.src.Stats().PartialRecords)
}

func TestSource_IdleTimeoutClosesASilentClient(t *testing.T) {
	cfg := testConfig("tcp://127.0.0.1:0")
	cfg.IdleTimeout = 100 * time.Millisecond
	r := start(t, cfg)
	c := dial(t, "tcp", r.src.Addr().String())
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := c.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the source closed the idle connection")
	require.Eventually(t, func() bool { s := r.src.Stats(); return s.IdleClosed == 1 && s.Connections == 0 }, 10*time.Second, 5*time.Millisecond)
	require.Empty(t, r.k.records())
}

func TestSource_OversizeRecord(t *testing.T) {
	t.Run("close", func(t *testing.T) {
		cfg := testConfig("tcp://127.0.0.1:0")
		cfg.MaxRecordBytes = 16
		cfg.OnOversize = OversizeClose
		r := start(t, cfg)
		c := dial(t, "tcp", r.src.Addr().String())
		_, err := io.WriteString(c, "ok\n"+strings.Repeat("x", 100)+"\nafter\n")
		require.NoError(t, err)
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err = c.Read(make([]byte, 1))
		require.Error(t, err, "the connection is closed")
		require.Equal(t, []string{"ok"}, r.k.waitFor(t, 1))
		require.Eventually(t, func() bool { return r.src.Stats().Dropped[DropOversize] == 1 }, 10*time.Second, 5*time.Millisecond)
	})
	t.Run("truncate", func(t *testing.T) {
		cfg := testConfig("tcp://127.0.0.1:0")
		cfg.MaxRecordBytes = 16
		r := start(t, cfg)
		c := dial(t, "tcp", r.src.Addr().String())
		_, err := io.WriteString(c, "ok\n"+strings.Repeat("x", 100000)+"\nafter\n")
		require.NoError(t, err)
		require.Equal(t, []string{"ok", strings.Repeat("x", 15) + "\n", "after"}, r.k.waitFor(t, 3))
		require.EqualValues(t, 1, r.src.Stats().TruncatedRecords)
	})
}

func TestSource_MalformedOctetFrameClosesTheConnection(t *testing.T) {
	cfg := testConfig("tcp://127.0.0.1:0")
	cfg.Framing = FramingOctetCounted
	r := start(t, cfg)
	c := dial(t, "tcp", r.src.Addr().String())
	_, err := io.WriteString(c, "5 hello3 abcgarbage 1 x")
	require.NoError(t, err)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err)
	require.Equal(t, []string{"hello", "abc"}, r.k.waitFor(t, 2))
	require.Eventually(t, func() bool { return r.src.Stats().Dropped[DropMalformedFrame] == 1 }, 10*time.Second, 5*time.Millisecond)
}

func TestSource_MaxConnections(t *testing.T) {
	t.Run("refuse", func(t *testing.T) {
		cfg := testConfig("tcp://127.0.0.1:0")
		cfg.MaxConnections = 1
		cfg.OnMaxConnections = MaxConnsRefuse
		r := start(t, cfg)
		c1 := dial(t, "tcp", r.src.Addr().String())
		_, err := io.WriteString(c1, "first\n")
		require.NoError(t, err)
		r.k.waitFor(t, 1)
		c2 := dial(t, "tcp", r.src.Addr().String())
		c2.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err = c2.Read(make([]byte, 1))
		require.Error(t, err, "refused: closed at once")
		require.EqualValues(t, 1, r.src.Stats().RefusedConnections)
		_, err = io.WriteString(c1, "still served\n")
		require.NoError(t, err)
		require.Equal(t, []string{"first", "still served"}, r.k.waitFor(t, 2))
	})
	t.Run("wait", func(t *testing.T) {
		cfg := testConfig("tcp://127.0.0.1:0")
		cfg.MaxConnections = 1
		r := start(t, cfg)
		c1 := dial(t, "tcp", r.src.Addr().String())
		_, err := io.WriteString(c1, "first\n")
		require.NoError(t, err)
		r.k.waitFor(t, 1)
		c2 := dial(t, "tcp", r.src.Addr().String()) // waits in the backlog
		_, err = io.WriteString(c2, "second\n")
		require.NoError(t, err)
		time.Sleep(100 * time.Millisecond)
		require.Equal(t, []string{"first"}, r.k.records(), "not accepted while the slot is taken")
		require.NoError(t, c1.Close())
		require.Equal(t, []string{"first", "second"}, r.k.waitFor(t, 2))
		require.Zero(t, r.src.Stats().RefusedConnections)
	})
}

func TestSource_Datagrams(t *testing.T) {
	for _, tc := range []struct {
		network string
		batch   bool
	}{{"unixgram", false}, {"udp", false}, {"unixgram", true}, {"udp", true}} {
		network := tc.network
		t.Run(fmt.Sprintf("%s/batch=%v", network, tc.batch), func(t *testing.T) {
			listen := "udp://127.0.0.1:0"
			if network == "unixgram" {
				listen = "unixgram://" + sockPath(t, "d.sock")
			}
			cfg := testConfig(listen)
			cfg.MaxRecordBytes = 64
			r := startWith(t, cfg, tc.batch, -1)
			c := dial(t, network, r.src.Addr().String())
			// Within the socket buffer: 200 small datagrams.
			var want []string
			for i := range 200 {
				m := fmt.Sprintf("datagram %d", i)
				want = append(want, m)
				_, err := c.Write([]byte(m + "\n"))
				require.NoError(t, err)
			}
			_, err := c.Write([]byte(strings.Repeat("z", 100)))
			require.NoError(t, err)
			want = append(want, strings.Repeat("z", 63)+"\n")
			require.Equal(t, want, r.k.waitFor(t, 201), "one record per datagram, in order")
			require.EqualValues(t, 1, r.src.Stats().TruncatedRecords)
			require.NoError(t, r.stop())
			if network == "unixgram" {
				_, err := os.Lstat(r.src.addr.address)
				require.ErrorIs(t, err, os.ErrNotExist)
			}
		})
	}
}

// An empty record carries nothing: an empty line of a stream, an empty
// datagram and one that is only a newline are all dropped, counted
// (reason empty), never delivered as an empty record.
func TestSource_EmptyLinesAndDatagramsAreDroppedAndCounted(t *testing.T) {
	for _, network := range []string{"tcp", "udp", "unixgram"} {
		for _, batch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/batch=%v", network, batch), func(t *testing.T) {
				listen := network + "://" + testport.Addr(t)
				if network == "unixgram" {
					listen = "unixgram://" + sockPath(t, "e.sock")
				}
				r := startWith(t, testConfig(listen), batch, -1)
				c := dial(t, network, r.src.Addr().String())
				sends := []string{"", "\n", "\r\n", "x\n", "\n", "y"}
				if network == "tcp" {
					sends = []string{"\n\r\nx\n\ny\n"}
				}
				for _, m := range sends {
					_, err := c.Write([]byte(m))
					require.NoError(t, err)
				}
				require.Equal(t, []string{"x", "y"}, r.k.waitFor(t, 2))
				want := uint64(4)
				if network == "tcp" {
					want = 3
				}
				require.Eventually(t, func() bool { return r.src.Stats().Dropped[DropEmpty] == want }, 20*time.Second, 5*time.Millisecond,
					"dropped empty: %d", r.src.Stats().Dropped[DropEmpty])
				require.NoError(t, r.stop())
				require.Equal(t, []string{"x", "y"}, r.k.records(), "an empty record was delivered")
				require.EqualValues(t, 2, r.src.Stats().Records)
			})
		}
	}
}

// A blocked flow cannot block datagram senders: what the queue cannot hold
// is dropped and counted as spool_full; every datagram is either emitted or
// counted.
func TestSource_DatagramsDroppedAndCountedWhileTheFlowBlocks(t *testing.T) {
	cfg := testConfig("unixgram://" + sockPath(t, "q.sock"))
	cfg.DatagramQueue = 4
	r := start(t, cfg)
	hold := make(chan struct{})
	r.k.mu.Lock()
	r.k.hold = hold
	r.k.mu.Unlock()
	c := dial(t, "unixgram", r.src.Addr().String())
	for i := range 50 {
		_, err := fmt.Fprintf(c, "d%d", i)
		require.NoError(t, err)
	}
	// One datagram is in emit (blocked), four wait in the queue: the other
	// 45 are dropped, each counted.
	require.Eventually(t, func() bool { return r.src.Stats().Dropped[DropSpoolFull] == 45 }, 20*time.Second, 5*time.Millisecond)
	close(hold)
	got := r.k.waitFor(t, 5)
	// The first four filled the queue; which one the emitter took out of
	// it before it blocked, making room for a fifth, depends on
	// scheduling: d4 if it took d0 at once, a later one if d4 came while
	// the queue was still full.
	require.Equal(t, []string{"d0", "d1", "d2", "d3"}, got[:4])
	var fifth int
	_, err := fmt.Sscanf(got[4], "d%d", &fifth)
	require.NoError(t, err)
	require.True(t, fifth >= 4 && fifth < 50, "fifth datagram %q", got[4])
	require.NoError(t, r.stop())
	s := r.src.Stats()
	require.EqualValues(t, 5, s.Records)
	require.EqualValues(t, 45, s.Dropped[DropSpoolFull])
}

// With a flow that blocks (a full spool, when_full: block), a stream client
// blocks in its writes; once the flow takes records again, every line
// arrives.
func TestSource_StreamClientBlocksWhileTheFlowBlocksAndNothingIsLost(t *testing.T) {
	path := sockPath(t, "b.sock")
	r := start(t, testConfig("unix://"+path))
	hold := make(chan struct{})
	r.k.mu.Lock()
	r.k.hold = hold
	r.k.mu.Unlock()
	c := dial(t, "unix", path)
	line := strings.Repeat("y", 100) + "\n"
	const n = 30000 // 3 MB: far more than the socket buffers hold
	wrote := make(chan int, 1)
	go func() {
		total := 0
		for range n {
			if _, err := io.WriteString(c, line); err != nil {
				break
			}
			total++
		}
		wrote <- total
	}()
	select {
	case <-wrote:
		t.Fatal("the client finished writing while the flow was blocked")
	case <-time.After(300 * time.Millisecond):
	}
	close(hold)
	require.Equal(t, n, <-wrote)
	recs := r.k.waitFor(t, n)
	require.Len(t, recs, n)
	for _, rec := range recs {
		require.Equal(t, line[:100], rec)
	}
}

func TestSource_SyslogOverOctetCountedTCP(t *testing.T) {
	cfg := testConfig("tcp://127.0.0.1:0")
	cfg.Framing = FramingOctetCounted
	cfg.Format = FormatSyslog
	r := start(t, cfg)
	c := dial(t, "tcp", r.src.Addr().String())
	m1 := "<34>1 2003-10-11T22:14:15.003Z host su - ID47 - multi\nline\n" // a newline ending the frame is not the message's
	m2 := "not syslog"
	_, err := fmt.Fprintf(c, "%d %s%d %s", len(m1), m1, len(m2), m2)
	require.NoError(t, err)
	recs := r.k.waitFor(t, 2)
	require.Equal(t, `{"timestamp":"2003-10-11T22:14:15.003Z","host":"host","app":"su","msgid":"ID47","facility":"auth","severity":"crit","message":"multi\nline"}`, recs[0])
	require.Equal(t, "not syslog", recs[1], "passed on raw")
	require.EqualValues(t, 1, r.src.Stats().ParseFailures)
}

func TestSource_JSONFormatCountsInvalidLines(t *testing.T) {
	cfg := testConfig("tcp://127.0.0.1:0")
	cfg.Format = FormatJSON
	r := start(t, cfg)
	c := dial(t, "tcp", r.src.Addr().String())
	_, err := io.WriteString(c, `{"a":1}`+"\n{broken\n[1,2]\n")
	require.NoError(t, err)
	require.Equal(t, []string{`{"a":1}`, "{broken", "[1,2]"}, r.k.waitFor(t, 3))
	require.EqualValues(t, 1, r.src.Stats().ParseFailures)
}

func TestSource_StopEndsOpenConnectionsDeliveringTheirPartialRecord(t *testing.T) {
	path := sockPath(t, "s.sock")
	r := start(t, testConfig("unix://"+path))
	c := dial(t, "unix", path)
	_, err := io.WriteString(c, "done\nnot yet")
	require.NoError(t, err)
	r.k.waitFor(t, 1)
	require.Eventually(t, func() bool { return r.src.Stats().Connections == 1 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, r.stop())
	require.Equal(t, []string{"done", "not yet"}, r.k.records())
}

func TestSource_SyslogWhoseJSONWouldNotFitIsPassedRaw(t *testing.T) {
	cfg := testConfig("tcp://127.0.0.1:0")
	cfg.Format = FormatSyslog
	cfg.MaxRecordBytes = 80
	r := start(t, cfg)
	c := dial(t, "tcp", r.src.Addr().String())
	short := "<13>1 - h a - - - hi"
	long := "<13>1 - h a - - - " + strings.Repeat("\x01", 10) // JSON escapes each control byte to 6 bytes
	_, err := io.WriteString(c, short+"\n"+long+"\n")
	require.NoError(t, err)
	recs := r.k.waitFor(t, 2)
	require.Equal(t, `{"host":"h","app":"a","facility":"user","severity":"notice","message":"hi"}`, recs[0])
	require.Equal(t, long, recs[1])
	require.LessOrEqual(t, len(recs[1]), 80)
	require.EqualValues(t, 1, r.src.Stats().ParseFailures)
}

// RunBatch delivers exactly what Run does, in the same order: whole lines
// of one read in batches, records across reads, truncated, partial and
// oversize ones on their own.
func TestRunBatch_DeliversWhatRunDoes(t *testing.T) {
	var in strings.Builder
	empty := 0
	for i := range 20000 {
		switch {
		case i%997 == 5:
			fmt.Fprintf(&in, "long %d %s\r\n", i, strings.Repeat("L", 3000)) // truncated at max_record_bytes
		case i%101 == 7:
			in.WriteString("\n") // an empty line: dropped, counted
			empty++
		case i%3 == 1:
			fmt.Fprintf(&in, "<13>1 2026-12-06T07:10:00.123Z web-%d app 42 ID%d - syslog %d %s\n", i%7, i, i, strings.Repeat("s", i%300))
		case i%11 == 2:
			fmt.Fprintf(&in, `{"n":%d,"m":"json"}`+"\n", i)
		default:
			fmt.Fprintf(&in, "line %d %s\n", i, strings.Repeat("x", i%200))
		}
	}
	in.WriteString("partial last")
	for _, format := range []string{FormatLines, FormatJSON, FormatSyslog} {
		t.Run(format, func(t *testing.T) { runBatchDeliversWhatRunDoes(t, format, in.String(), empty) })
	}
}

func runBatchDeliversWhatRunDoes(t *testing.T, format, in string, empty int) {
	var results [][]string
	var stats []Stats
	for _, batch := range []bool{false, true} {
		cfg := testConfig("unix://" + sockPath(t, fmt.Sprintf("b%v.sock", batch)))
		cfg.MaxRecordBytes = 2048
		cfg.Format = format
		r := startWith(t, cfg, batch, -1)
		c := dial(t, "unix", r.src.Addr().String())
		// Writes of odd sizes: records cross reads.
		data := in
		for len(data) > 0 {
			n := min(len(data), 7777)
			_, err := c.Write([]byte(data[:n]))
			require.NoError(t, err)
			data = data[n:]
		}
		require.NoError(t, c.Close())
		want := 20001 - empty
		got := r.k.waitFor(t, want)
		require.NoError(t, r.stop())
		st := r.src.Stats()
		require.Equal(t, uint64(want), st.Records)
		require.Equal(t, uint64(empty), st.Dropped[DropEmpty])
		require.Equal(t, uint64(1), st.PartialRecords)
		require.Positive(t, st.TruncatedRecords)
		if batch {
			require.Positive(t, r.k.batches, "batches were used")
		}
		results = append(results, got)
		stats = append(stats, st)
	}
	require.Equal(t, results[0], results[1])
	require.Equal(t, stats[0].Bytes, stats[1].Bytes)
	require.Equal(t, stats[0].ParseFailures, stats[1].ParseFailures)
	if format != FormatLines {
		require.Positive(t, stats[1].ParseFailures)
	}
	if format == FormatSyslog {
		parsed := 0
		for _, r := range results[1] {
			if strings.HasPrefix(r, "{") && strings.Contains(r, "syslog ") {
				parsed++
			}
		}
		require.Greater(t, parsed, 5000, "syslog lines went through the JSON arena")
	}
}

// A batch the flow fails part-way: the records it did not take are counted
// as dropped (emit_error) and the source stops with the flow's error.
func TestRunBatch_FlowErrorCountsTheRestAndStops(t *testing.T) {
	cfg := testConfig("unix://" + sockPath(t, "f.sock"))
	r := startWith(t, cfg, true, 10)
	c := dial(t, "unix", r.src.Addr().String())
	var in strings.Builder
	for i := range 100 {
		fmt.Fprintf(&in, "line %d\n", i)
	}
	_, err := c.Write([]byte(in.String()))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return r.src.Stats().Dropped[DropEmitError] > 0 }, 20*time.Second, 5*time.Millisecond)
	require.ErrorContains(t, r.stop(), "flow failed")
	st := r.src.Stats()
	require.Equal(t, uint64(10), st.Records)
	require.Len(t, r.k.records(), 10)
	// The rest of the failing read's batch: the lines after the 10th that
	// were read (one write: usually all 90).
	require.LessOrEqual(t, st.Dropped[DropEmitError], uint64(90))
}

// The same with batches: the consumer takes what is queued at once into
// one blocked batch; every datagram is still either emitted, in order, or
// counted as dropped.
func TestRunBatch_DatagramsDroppedAndCountedWhileTheFlowBlocks(t *testing.T) {
	cfg := testConfig("unixgram://" + sockPath(t, "qb.sock"))
	cfg.DatagramQueue = 4
	r := startWith(t, cfg, true, -1)
	hold := make(chan struct{})
	r.k.mu.Lock()
	r.k.hold = hold
	r.k.mu.Unlock()
	c := dial(t, "unixgram", r.src.Addr().String())
	for i := range 50 {
		_, err := fmt.Fprintf(c, "d%d", i)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return r.src.Stats().Dropped[DropSpoolFull] >= 40 }, 20*time.Second, 5*time.Millisecond)
	// Nothing more arrives: the reader has seen all 50.
	require.Eventually(t, func() bool {
		s := r.src.Stats()
		return s.Dropped[DropSpoolFull] >= 40 && len(r.k.records()) == 0
	}, 20*time.Second, 5*time.Millisecond)
	close(hold)
	require.Eventually(t, func() bool {
		s := r.src.Stats()
		return s.Records+s.Dropped[DropSpoolFull] == 50
	}, 20*time.Second, 5*time.Millisecond, "each datagram emitted or counted")
	require.NoError(t, r.stop())
	s := r.src.Stats()
	got := r.k.records()
	require.EqualValues(t, len(got), s.Records)
	require.EqualValues(t, 50, s.Records+s.Dropped[DropSpoolFull], "each datagram emitted or counted")
	for i := 1; i < len(got); i++ {
		var a, b int
		fmt.Sscanf(got[i-1], "d%d", &a)
		fmt.Sscanf(got[i], "d%d", &b)
		require.Less(t, a, b, "in order")
	}
}

// A malformed octet-counting frame (a client sending newline-framed syslog
// to framing: octet_counting) closed the connection and dropped the rest of
// what the client sent with only a counter: the log now says it, with the
// remote and what to change, once a minute at most (the client reconnects
// and fails again).
func TestSource_MalformedOctetFrameIsLoggedOnceAMinute(t *testing.T) {
	cfg := testConfig("tcp://127.0.0.1:0")
	cfg.Framing = FramingOctetCounted
	var logs syncBuffer
	src, err := New(cfg, Settings{Name: "sock", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	k := &collector{failAt: -1}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, k.emit) }()
	t.Cleanup(func() { cancel(); <-done })
	<-src.Ready()
	for i := range 2 {
		c := dial(t, "tcp", src.Addr().String())
		_, err := io.WriteString(c, "<13>Dec  6 10:00:00 host app: newline framed\n")
		require.NoError(t, err)
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err = c.Read(make([]byte, 1))
		require.Error(t, err, "the connection is closed")
		require.Eventually(t, func() bool { return src.Stats().Dropped[DropMalformedFrame] == uint64(i+1) }, 10*time.Second, 5*time.Millisecond)
	}
	out := logs.String()
	require.Equal(t, 1, strings.Count(out, "malformed RFC 6587 octet-counting frame"), out)
	require.Contains(t, out, "level=WARN")
	require.Contains(t, out, "remote=127.0.0.1:")
	require.Contains(t, out, "framing: lines")
}

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A record cut to max_record_bytes (on_oversize: truncate) lost its end
// with only a counter to say it: the source now logs it at WARN, with the
// client, the limit and the record's size, once a minute at most (not once
// per record, nor per connection).
func TestSource_TruncatedRecordIsLoggedOnceAMinute(t *testing.T) {
	for _, tc := range []struct {
		name, listen string
		octet        bool
		sizeKey      string
	}{
		{name: "lines", listen: "tcp://127.0.0.1:0", sizeKey: "record_bytes=100 "},
		{name: "octet counting", listen: "tcp://127.0.0.1:0", octet: true, sizeKey: "record_bytes=100 "},
		// The kernel cuts a datagram to the read buffer (max+1): its
		// size is known to be at least that.
		{name: "datagrams", listen: "udp://127.0.0.1:0", sizeKey: "record_bytes_at_least=33 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(tc.listen)
			cfg.MaxRecordBytes = 32
			if tc.octet {
				cfg.Framing = FramingOctetCounted
			}
			var logs syncBuffer
			src, err := New(cfg, Settings{Name: "sock", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			require.NoError(t, err)
			k := &collector{failAt: -1}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- src.Run(ctx, k.emit) }()
			t.Cleanup(func() { cancel(); <-done })
			<-src.Ready()
			long := strings.Repeat("x", 100)
			network := "tcp"
			if tc.listen[:3] == "udp" {
				network = "udp"
			}
			for range 2 {
				c := dial(t, network, src.Addr().String())
				for range 2 {
					msg := long + "\n"
					if tc.octet {
						msg = fmt.Sprintf("%d %s", len(long), long)
					}
					_, err := io.WriteString(c, msg)
					require.NoError(t, err)
				}
				c.Close()
			}
			require.Eventually(t, func() bool { return src.Stats().TruncatedRecords == 4 }, 10*time.Second, 5*time.Millisecond)
			out := logs.String()
			require.Equal(t, 1, strings.Count(out, "longer than max_record_bytes was truncated"), out)
			require.Contains(t, out, "level=WARN")
			require.Contains(t, out, "max_record_bytes=32")
			require.Contains(t, out, tc.sizeKey)
			require.Contains(t, out, "kept_bytes=32")
			if network == "tcp" {
				require.Contains(t, out, "remote=127.0.0.1:")
			}
		})
	}
}
