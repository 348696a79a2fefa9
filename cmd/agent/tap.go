package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"

	"github.com/kplagent/agent/agent"
)

// cmdTap streams a sample of the records entering a flow of the running
// agent (GET /tap on its admin endpoint) until Ctrl-C.
func cmdTap(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agent tap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf statusFlags
	sf.register(fs)
	rate := fs.Float64("rate", 10, "at most this many records a second")
	asJSON := fs.Bool("json", false, "print each sampled record as a JSON line (time, flow, source, data) instead of its data")
	flow, rest := "", args
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		flow, rest = args[0], args[1:]
	}
	if code, ok := parseFlags(fs, rest, stdout, stderr); !ok {
		return code
	}
	if flow == "" && fs.NArg() == 1 {
		flow = fs.Arg(0)
	}
	if flow == "" {
		fmt.Fprintln(stderr, "usage: agent tap FLOW [--rate N] [--json] [--admin HOST:PORT | -c FILE]")
		return exitUsage
	}
	if *rate <= 0 || *rate > 1000 {
		// A usage error, before asking the agent (which refuses it too).
		fmt.Fprintf(stderr, "agent tap: --rate %g: want records per second in (0, 1000]\n", *rate)
		return exitUsage
	}
	base, err := sf.adminURL()
	if err != nil {
		fmt.Fprintln(stderr, "agent tap:", err)
		return exitUsage
	}
	ctx, stop := watchSignals(signalOptions{stderr: stderr})
	defer stop()
	u := base + "/tap?flow=" + url.QueryEscape(flow) + "&rate=" + strconv.FormatFloat(*rate, 'f', -1, 64)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		fmt.Fprintln(stderr, "agent tap:", err)
		return exitUsage
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "agent tap: is the agent running?", err)
		return exitFailed
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		// An agent answers 200, 400 (a bad rate), 404 "no flow …" or
		// 503, and marks its answers (agents older than AdminHeader do
		// not): anything else is another program.
		if resp.Header.Get(agent.AdminHeader) == "" && resp.StatusCode != http.StatusServiceUnavailable &&
			resp.StatusCode != http.StatusBadRequest && !(resp.StatusCode == http.StatusNotFound && bytes.HasPrefix(b, []byte("no flow "))) {
			fmt.Fprintln(stderr, "agent tap:", notAnAgent(base, "/tap", resp.Status))
			return exitFailed
		}
		fmt.Fprintf(stderr, "agent tap: %s: %s", resp.Status, b)
		return exitFailed
	}
	// An agent's tap streams application/x-ndjson (agents older than
	// AdminHeader too); a server that answers 200 to everything is not
	// one: tap printed nothing and exited 0 (or waited for ever on a
	// stream).
	if resp.Header.Get(agent.AdminHeader) == "" {
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/x-ndjson" {
			got := resp.Status
			if ct := resp.Header.Get("Content-Type"); ct != "" {
				got += " with " + ct
			}
			fmt.Fprintln(stderr, "agent tap:", notAnAgent(base, "/tap", got))
			return exitFailed
		}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	w := bufio.NewWriter(stdout)
	for sc.Scan() {
		if *asJSON {
			_, _ = w.Write(sc.Bytes())
			_ = w.WriteByte('\n')
		} else {
			var tr agent.TapRecord
			if err := json.Unmarshal(sc.Bytes(), &tr); err != nil {
				continue
			}
			if tr.DataBase64 != nil {
				fmt.Fprintf(w, "(binary, %d bytes)\n", len(tr.DataBase64))
			} else {
				_, _ = w.WriteString(tr.Data)
				if n := len(tr.Data); n == 0 || tr.Data[n-1] != '\n' {
					_ = w.WriteByte('\n')
				}
			}
		}
		if err := w.Flush(); err != nil {
			return exitFailed // stdout closed (| head)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
		fmt.Fprintln(stderr, "agent tap:", err)
		return exitFailed
	}
	return exitOK
}
