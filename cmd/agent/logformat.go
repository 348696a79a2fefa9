package main

import (
	"io"
	"log/slog"
	"os"
	"strings"
)

// newLogger builds the process's logger. format is text, json or auto:
// JSON when stderr is the systemd journal (the journal keeps each line's
// fields), text otherwise (a terminal, a file). Durations are strings
// ("1.5s") in both.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Value.Kind() == slog.KindDuration {
			return slog.String(a.Key, a.Value.Duration().String())
		}
		return a
	}}
	if format == "auto" || format == "" {
		format = "text"
		if f, ok := w.(*os.File); ok && underJournal(f) {
			format = "json"
		}
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// underJournal reports whether f is the stream systemd connected to the
// journal: $JOURNAL_STREAM names its device and inode (systemd.exec(5)). A
// shell started from a service inherits the variable but not the stream.
func underJournal(f *os.File) bool {
	js := os.Getenv("JOURNAL_STREAM")
	if js == "" {
		return false
	}
	dev, ino, ok := strings.Cut(js, ":")
	if !ok {
		return false
	}
	fdev, fino, ok := fileDevIno(f)
	return ok && dev == fdev && ino == fino
}
