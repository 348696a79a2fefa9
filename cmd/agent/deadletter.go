package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kplagent/agent/agent"
)

// cmdDeadLetter prints the dead-letter file: one block per record with when,
// where and why, then the record (as text when it is UTF-8, else base64).
// --json prints the file's lines unchanged (for jq).
func cmdDeadLetter(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agent dead-letter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "", "config file whose state_dir holds the dead-letter file (default /etc/agent/agent.yaml)")
	stateDir := fs.String("state-dir", "", "state directory holding "+agent.DeadLetterFile)
	path := fs.String("file", "", "the dead-letter file itself")
	asJSON := fs.Bool("json", false, "print the JSON lines as they are")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	p := *path
	switch {
	case p != "":
	case *stateDir != "":
		p = filepath.Join(*stateDir, agent.DeadLetterFile)
	default:
		c := *cfgPath
		if c == "" {
			c = defaultConfigPath
		}
		cfg, err := agent.LoadConfig(c, components())
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitUsage
		}
		p = filepath.Join(cfg.StateDir, agent.DeadLetterFile)
	}
	f, err := os.Open(p)
	if os.IsNotExist(err) {
		fmt.Fprintf(stderr, "agent dead-letter: %s does not exist: nothing was dead-lettered\n", p)
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "agent dead-letter:", err)
		return exitFailed
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	n := 0
	for sc.Scan() {
		n++
		if *asJSON {
			w.Write(sc.Bytes())
			w.WriteByte('\n')
			continue
		}
		var r agent.DeadLetterRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			fmt.Fprintf(stderr, "agent dead-letter: %s:%d: %v\n", p, n, err)
			continue
		}
		fmt.Fprintf(w, "%s flow=%s output=%s pk=%q\n  reason: %s\n", r.Time.Format("2006-01-02T15:04:05Z07:00"), r.Flow, r.Output, r.PartitionKey, r.Reason)
		if r.Text != nil {
			fmt.Fprintf(w, "  text: %q\n", *r.Text)
		} else {
			fmt.Fprintf(w, "  base64: %s\n", base64.StdEncoding.EncodeToString(r.Data))
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(stderr, "agent dead-letter:", err)
		return exitFailed
	}
	return exitOK
}
