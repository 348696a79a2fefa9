package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A reload asked for while another runs (the loop is not receiving: it
// stops the old pipeline) waits and runs next, reading the file as it is
// then; it used to be dropped, silently for a SIGHUP, and an edit made
// during a reload was never applied.
func TestReloadQueue_ARequestDuringAReloadRunsNext(t *testing.T) {
	q := newReloadQueue()
	reply := q.request() // nobody receives: a reload is running
	select {
	case r := <-reply:
		t.Fatalf("refused while a reload runs: %v", r.err)
	default:
	}
	again := q.request()
	require.ErrorContains(t, (<-again).err, "already waiting", "more requests are the same request")

	got := <-q.ch // the loop takes it once the running reload is done
	got <- reloadResult{}
	require.NoError(t, (<-reply).err)

	// Stopping answers a request still queued.
	reply = q.request()
	q.refuseQueued()
	require.ErrorContains(t, (<-reply).err, "stopping")
}
