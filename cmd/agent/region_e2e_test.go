package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// runBinEnv is runBin with exactly env as the agent's environment.
func runBinEnv(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, agentBin, args...)
	cmd.SysProcAttr = childAttr() // see agentCmd
	cmd.Env = env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatal(err)
		}
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// cleanAWSEnv is an environment without any AWS_* variable, HOME an empty
// directory (no ~/.aws). On an EC2 instance the SDK would ask the instance
// metadata for a region, so there it is turned off.
func cleanAWSEnv(t *testing.T) (env []string, home string) {
	home = t.TempDir()
	env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home}
	if v, ok := os.LookupEnv("GORACE"); ok { // see raceNoExitSleep
		env = append(env, "GORACE="+v)
	}
	for _, f := range []string{"/sys/devices/virtual/dmi/id/sys_vendor", "/sys/devices/virtual/dmi/id/bios_vendor", "/sys/hypervisor/uuid"} {
		if b, err := os.ReadFile(f); err == nil && (strings.HasPrefix(strings.ToLower(string(b)), "amazon ec2") || strings.HasPrefix(strings.ToLower(string(b)), "ec2")) {
			env = append(env, "AWS_EC2_METADATA_DISABLED=true")
			break
		}
	}
	return env, home
}

func TestValidate_AWSOutputsWithoutARegionFailAsStartWould(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`state_dir: `+filepath.Join(dir, "state")+`
admin: {listen: "off"}
sources:
  - {name: app, type: file, file: {include: [`+filepath.Join(dir, "*.log")+`], max_record_bytes: 512KiB}}
  - {name: web, type: file, file: {include: [`+filepath.Join(dir, "*.web")+`], max_record_bytes: 512KiB}}
outputs:
  - name: k
    type: kinesis
    kinesis: {stream: logs, endpoint: "http://127.0.0.1:1"}
  - name: f
    type: firehose
    firehose:
      stream: logs
      endpoint: "http://127.0.0.1:1"
flows:
  - {name: a, sources: [app], output: k}
  - {name: b, sources: [web], output: f}
`), 0o600))
	const notSet = "not set (set region, ?region= in a kinesis:// or firehose:// URL, AWS_REGION, or the profile's region)"

	env, home := cleanAWSEnv(t)
	out, errOut, code := runBinEnv(t, env, "validate", "-c", cfg)
	require.Equal(t, exitUsage, code, "stdout: %s\nstderr: %s", out, errOut)
	require.NotContains(t, out, "ok")
	require.Contains(t, errOut, cfg+":9: outputs[0].kinesis.region: "+notSet+", and EC2 instance metadata gives none: this host is not an EC2 instance")
	require.Contains(t, errOut, cfg+":12: outputs[1].firehose.region: "+notSet)

	// agent run checks it as validate does, before anything starts.
	_, runErr, code := runBinEnv(t, env, "run", "-c", cfg)
	require.Equal(t, exitUsage, code, runErr)
	require.Contains(t, runErr, "outputs[0].kinesis.region: "+notSet)

	// Wherever start would find a region, validate finds it.
	for name, extra := range map[string][]string{
		"AWS_REGION":         {"AWS_REGION=eu-west-1"},
		"AWS_DEFAULT_REGION": {"AWS_DEFAULT_REGION=eu-west-1"},
		"AWS_PROFILE":        {"AWS_PROFILE=prod"},
	} {
		t.Run(name, func(t *testing.T) {
			out, errOut, code := runBinEnv(t, append(append([]string(nil), env...), extra...), "validate", "-c", cfg)
			if name == "AWS_PROFILE" {
				// The profile is named but ~/.aws/config has none yet.
				require.Equal(t, exitUsage, code, errOut)
				require.Contains(t, errOut, "failed to get shared config profile, prod")
				return
			}
			require.Equal(t, exitOK, code, errOut)
			require.Contains(t, out, "agent.yaml: ok")
		})
	}
	require.NoError(t, os.MkdirAll(filepath.Join(home, ".aws"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(home, ".aws", "config"), []byte("[default]\nregion = eu-central-1\n[profile prod]\nregion = us-east-2\n"), 0o600))
	for _, extra := range [][]string{nil, {"AWS_PROFILE=prod"}} {
		out, errOut, code := runBinEnv(t, append(append([]string(nil), env...), extra...), "validate", "-c", cfg)
		require.Equal(t, exitOK, code, "%v: %s", extra, errOut)
		require.Contains(t, out, "agent.yaml: ok")
	}
}
