// Command fakejournalctl stands in for journalctl in the journald source's
// tests. It serves the entries of a file in the export format (each entry
// ends with an empty line and has a __CURSOR), as `journalctl --follow
// --output=export` would:
//
//	FAKE_JOURNAL      the file (tests append entries to it while it runs)
//	FAKE_JOURNAL_LOG  a line with the arguments is appended per start
//	FAKE_JOURNAL_DIE  "N": the first start writes N entries and half of the
//	                  next one, then exits with status 1 (a crash mid-stream)
//	FAKE_JOURNAL_GARBAGE "N": the first start writes N entries, then a line
//	                  that is not in the export format, and waits
//	FAKE_JOURNAL_FAIL a message written to stderr before exiting with
//	                  status 1 at once (an unreadable journal)
//
// It honours --after-cursor (a cursor it does not know is an error, as a
// bad cursor is for journalctl), --lines=0 (start at the end), --since=@SECONDS
// (by __REALTIME_TIMESTAMP) and --follow (polls the file).
package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	var after, since string
	follow, tailZero := false, false
	for _, a := range os.Args[1:] {
		switch {
		case strings.HasPrefix(a, "--after-cursor="):
			after = strings.TrimPrefix(a, "--after-cursor=")
		case strings.HasPrefix(a, "--since=@"):
			since = strings.TrimPrefix(a, "--since=@")
		case a == "--follow":
			follow = true
		case a == "--lines=0":
			tailZero = true
		}
	}
	starts := 0
	logPath := os.Getenv("FAKE_JOURNAL_LOG")
	if logPath != "" {
		if old, err := os.ReadFile(logPath); err == nil {
			starts = bytes.Count(old, []byte("\n"))
		}
	}
	// logStart notes the start once its position is fixed: a test that
	// saw the line may append entries that must come out.
	logStart := func() {
		if logPath == "" {
			return
		}
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fail(err.Error())
		}
		fmt.Fprintln(f, strings.Join(os.Args[1:], " "))
		f.Close()
	}
	if msg := os.Getenv("FAKE_JOURNAL_FAIL"); msg != "" {
		logStart()
		fail(msg)
	}
	die, garbage := -1, -1
	if n, err := strconv.Atoi(os.Getenv("FAKE_JOURNAL_DIE")); err == nil && starts == 0 {
		die = n
	}
	if n, err := strconv.Atoi(os.Getenv("FAKE_JOURNAL_GARBAGE")); err == nil && starts == 0 {
		garbage = n
	}
	path := os.Getenv("FAKE_JOURNAL")
	pos := 0
	data, _ := os.ReadFile(path)
	switch {
	case after != "":
		i := bytes.Index(data, []byte("\n__CURSOR="+after+"\n"))
		if i < 0 && bytes.HasPrefix(data, []byte("__CURSOR="+after+"\n")) {
			i = 0
		}
		if i < 0 {
			logStart()
			fail("Failed to seek to cursor: Invalid argument")
		}
		end := bytes.Index(data[i:], []byte("\n\n"))
		if end < 0 {
			fail("cursor in an incomplete entry")
		}
		pos = i + end + 2
	case tailZero:
		pos = completeEnd(data, 0)
	}
	logStart()
	var sinceUS int64 = -1
	if since != "" {
		s, err := strconv.ParseInt(since, 10, 64)
		if err != nil {
			fail("bad --since")
		}
		sinceUS = s * 1e6
	}
	written := 0
	for {
		data, _ = os.ReadFile(path)
		for {
			end := bytes.Index(data[pos:], []byte("\n\n"))
			if end < 0 {
				break
			}
			ent := data[pos : pos+end+2]
			pos += end + 2
			if sinceUS >= 0 && realtime(ent) < sinceUS {
				continue
			}
			if written == garbage {
				os.Stdout.WriteString("-- this is not the export format --\n\n")
				select {} // until killed
			}
			if written == die {
				os.Stdout.Write(ent[:len(ent)/2])
				os.Exit(1)
			}
			if _, err := os.Stdout.Write(ent); err != nil {
				os.Exit(1)
			}
			written++
		}
		if !follow {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// completeEnd is the end of the last complete entry.
func completeEnd(data []byte, pos int) int {
	if i := bytes.LastIndex(data[pos:], []byte("\n\n")); i >= 0 {
		return pos + i + 2
	}
	return pos
}

func realtime(ent []byte) int64 {
	for _, l := range bytes.Split(ent, []byte("\n")) {
		if v, ok := bytes.CutPrefix(l, []byte("__REALTIME_TIMESTAMP=")); ok {
			n, _ := strconv.ParseInt(string(v), 10, 64)
			return n
		}
	}
	return 0
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(1)
}
