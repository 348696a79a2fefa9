package journald

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/kplagent/agent/agent/source/journald/journaldtest"
)

// fakeJournalctl is the fake journalctl, built once.
var fakeJournalctl string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fake-journalctl-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fakeJournalctl, err = journaldtest.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}
