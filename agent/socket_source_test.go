package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/agent/source/socket"
)

// The commented socket example of agent.yaml.example, uncommented, is a
// valid source.
func TestConfig_ExampleSocketSourceValidates(t *testing.T) {
	data, err := os.ReadFile("../agent.yaml.example")
	require.NoError(t, err)
	var block []string
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "  # - name: syslog") {
			in = true
		}
		if !in {
			continue
		}
		if !strings.HasPrefix(line, "  #") {
			break
		}
		l := "  " + strings.TrimPrefix(line, "  # ")
		if strings.TrimSpace(l) == "" || strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue // a comment line of the example
		}
		block = append(block, l)
	}
	require.NotEmpty(t, block, "the socket example is in agent.yaml.example")
	cfg, err := ParseConfig("example.yaml", []byte("state_dir: /tmp/x\nsources:\n"+strings.Join(block, "\n")+`
outputs:
  - name: out
    type: stdout
flows:
  - name: main
    sources: [syslog]
    output: out
`), noEnv, testComponents)
	require.NoError(t, err)
	c := cfg.Sources[0].Config.(*socket.Config)
	require.Equal(t, socket.DefaultConfig().MaxRecordBytes, c.MaxRecordBytes)
	require.Equal(t, "unix:///run/agent/syslog.sock", c.Listen)
}

func TestConfig_SocketSourceIsValidated(t *testing.T) {
	_, err := ParseConfig("t.yaml", []byte(`
state_dir: /tmp/x
sources:
  - name: in
    type: socket
    socket: {listen: "tcp://127.0.0.1", format: xml}
outputs:
  - name: out
    type: stdout
flows:
  - name: main
    sources: [in]
    output: out
`), noEnv, testComponents)
	require.ErrorContains(t, err, "sources[0].socket.listen:")
	require.ErrorContains(t, err, "sources[0].socket.format: must be")
}

// A socket source's records go to the flow a read at a time (EmitBatch):
// all arrive in order, filtered ones are counted, and the source's counts
// are complete.
func TestAgent_SocketSourceBatchesAreDeliveredInOrderAndCounted(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "in.sock")
	if len(sock) > 100 {
		sock = filepath.Join("/tmp", fmt.Sprintf("agent-batch-%d.sock", os.Getpid()))
	}
	cfg, err := ParseConfig("t.yaml", []byte(fmt.Sprintf(`
state_dir: %s
admin: {listen: off}
sources:
  - name: in
    type: socket
    socket: {listen: "unix://%s"}
outputs:
  - name: out
    type: stdout
    stdout: {encoding: text}
flows:
  - name: main
    sources: [in]
    output: out
    sender: {concurrency: 1}
    processors:
      - drop: {regex: '^DROP'}
`, filepath.Join(dir, "state"), sock)), noEnv, testComponents)
	require.NoError(t, err)
	var out syncBuf
	a, err := New(cfg, Settings{Components: testComponents, Logger: slog.New(slog.DiscardHandler), Stdout: &out})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var c net.Conn
	require.Eventually(t, func() bool { c, err = net.Dial("unix", sock); return err == nil }, 20*time.Second, 5*time.Millisecond)
	var in, want strings.Builder
	for i := range 20000 {
		if i%5 == 0 {
			fmt.Fprintf(&in, "DROP %d\n", i)
			continue
		}
		fmt.Fprintf(&in, "line %d %s\n", i, strings.Repeat("x", i%100))
		fmt.Fprintf(&want, "line %d %s\n", i, strings.Repeat("x", i%100))
	}
	_, err = c.Write([]byte(in.String()))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return a.Snapshot().RecordsSent >= 16000 }, 30*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	require.Equal(t, want.String(), out.String())
	require.Equal(t, 20000.0, counterValue(t, a, "agent_records_received_total", map[string]string{"source": "in"}))
	require.Equal(t, 4000.0, counterValue(t, a, "agent_records_dropped_total", map[string]string{"flow": "main", "reason": "filtered"}))
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
