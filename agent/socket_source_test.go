package agent

import (
	"os"
	"strings"
	"testing"

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
