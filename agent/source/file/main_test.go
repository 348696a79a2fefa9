package file

import (
	"fmt"
	"os"
	"slices"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the tests or, when a test re-executes the test binary as a
// child process (childRoleEnv set), that child's role (see child_test.go).
func TestMain(m *testing.M) {
	loopHook = checkInvariants
	if role := os.Getenv(childRoleEnv); role != "" {
		os.Exit(runChild(role))
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
		// Every descriptor taken from the budget was given back.
		if n := processFDs.held.Load(); n != 0 {
			fmt.Fprintf(os.Stderr, "descriptor budget: %d still held after every source stopped\n", n)
			code = 1
		}
		if n := processFDs.starved.Load(); n != 0 {
			fmt.Fprintf(os.Stderr, "descriptor budget: %d sources still marked starved\n", n)
			code = 1
		}
	}
	os.Exit(code)
}

// checkInvariants panics when the runner's indexes disagree; every test
// runs it after every turn of the loop.
func checkInvariants(r *runner) {
	fail := func(format string, a ...any) { panic(fmt.Sprintf("invariant: "+format, a...)) }
	for p, f := range r.byPath {
		if f.path != p {
			fail("byPath[%s] has path %q", p, f.path)
		}
		if !slices.Contains(r.live, f) {
			fail("byPath[%s] not live", p)
		}
	}
	open := 0
	seen := map[*file]bool{}
	for _, f := range r.live {
		if seen[f] {
			fail("%s live twice", f.inc.id)
		}
		seen[f] = true
		if f.path != "" && r.byPath[f.path] != f {
			fail("%s at %s is not byPath's", f.inc.id, f.path)
		}
		if r.byKey[f.key] != f {
			fail("%s is not byKey's", f.inc.id)
		}
		if f.fd != nil {
			open++
			if f.state != stOpen && f.state != stDetached {
				fail("%s has a descriptor in state %s", f.inc.id, f.state)
			}
		} else if f.state == stOpen || f.state == stDetached || f.state == stGone {
			fail("%s is live without a descriptor in state %s", f.inc.id, f.state)
		}
		if (f.state == stDetached) != (f.path == "" && f.fd != nil) {
			fail("%s: state %s with path %q", f.inc.id, f.state, f.path)
		}
		if f.inQueue != slices.Contains(r.waitq, f) {
			fail("%s: inQueue %v disagrees with the queue", f.inc.id, f.inQueue)
		}
		if f.inc.f != f || r.s.byID[f.inc.id] != f.inc {
			fail("%s: incarnation not registered", f.inc.id)
		}
		if len(f.spill) > int(r.cfg.MaxRecordBytes)+1 {
			fail("%s: spill of %d bytes", f.inc.id, len(f.spill))
		}
	}
	if open != r.nOpen {
		fail("%d descriptors, nOpen %d", open, r.nOpen)
	}
	if held := r.s.fds.held.Load(); held < int64(r.nOpen) || held > r.s.fds.max {
		fail("pool holds %d (max %d) with %d files open", held, r.s.fds.max, r.nOpen)
	}
	failed := 0
	for _, f := range r.live {
		if f.failed {
			failed++
		}
	}
	if failed != r.nFailed {
		fail("%d failed files, nFailed %d", failed, r.nFailed)
	}
	for _, f := range r.waitq {
		if !seen[f] || !f.inQueue || f.fd != nil {
			fail("%s queued but not live, not flagged, or open", f.inc.id)
		}
	}
}
