package main

import (
	"fmt"
	"strings"

	"github.com/kplagent/agent/agent"
	"github.com/kplagent/agent/agent/source/file"
	"github.com/kplagent/agent/agent/source/stdin"
	fileout "github.com/kplagent/agent/outputs/file"
	httpout "github.com/kplagent/agent/outputs/http"
	"github.com/kplagent/agent/outputs/stdout"
)

func stdoutOutput() agent.OutputConfig {
	c := stdout.DefaultConfig()
	return agent.OutputConfig{Type: "stdout", Stdout: &c}
}

func fileOutput(dir string) agent.OutputConfig {
	c := fileout.DefaultConfig()
	c.Dir = dir
	return agent.OutputConfig{Type: "file", File: &c}
}

func httpOutput(to string, o *tailOptions) (agent.OutputConfig, error) {
	c := httpout.DefaultConfig()
	c.URL = to
	c.Format = o.httpFormat
	if !o.gzip {
		c.Compression = httpout.CompressionNone
	}
	if len(o.headers) > 0 {
		c.Headers = map[string]string(o.headers)
	}
	if o.bearer != "" {
		c.Auth.Bearer = o.bearer
	}
	if o.basic != "" {
		user, pass, ok := strings.Cut(o.basic, ":")
		if !ok {
			return agent.OutputConfig{}, fmt.Errorf("--basic-auth: want USER:PASSWORD")
		}
		c.Auth.Basic = &httpout.BasicAuth{Username: user, Password: pass}
	}
	c.TLS.CAFile, c.TLS.CertFile, c.TLS.KeyFile = o.caFile, o.certFile, o.keyFile
	c.TLS.InsecureSkipVerify = o.insecure
	if o.httpTimeout > 0 {
		c.Timeout = o.httpTimeout
	}
	return agent.OutputConfig{Type: "http", HTTP: &c}, nil
}

func defaultFileSource() file.Config { return file.DefaultConfig() }

func setMultilineStart(c *file.Config, pattern string) {
	m := file.DefaultMultilineConfig()
	m.Start = pattern
	c.Multiline = &m
}

func stdinSource(path string) stdin.Config {
	c := stdin.DefaultConfig()
	c.Path = path
	return c
}
