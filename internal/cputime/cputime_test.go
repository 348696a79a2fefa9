package cputime

import (
	"crypto/sha256"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// spin burns CPU on the calling (locked) thread until Clock has advanced by
// d, and reports false if that took longer than a generous wall-time
// deadline.
func spin(d time.Duration) bool {
	deadline := time.Now().Add(30 * time.Second)
	start := Clock()
	sum := sha256.Sum256(nil)
	for Clock()-start < d {
		for range 1000 {
			sum = sha256.Sum256(sum[:])
		}
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

func TestThread_CountsTheCallingThreadsWork(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0, ok := Thread()
	if runtime.GOOS == "linux" {
		require.True(t, ok, "CLOCK_THREAD_CPUTIME_ID is available on Linux")
	}
	if !ok {
		t.Skip("no thread CPU clock on " + runtime.GOOS)
	}
	require.True(t, spin(20*time.Millisecond), "20ms of CPU in 30s")
	c1, ok := Thread()
	require.True(t, ok)
	require.GreaterOrEqual(t, c1-c0, 20*time.Millisecond)
}

// Another thread's work, and the time this thread waits for it, do not
// count: that is what makes the clock hold on a loaded machine.
func TestThread_LeavesOtherThreadsOut(t *testing.T) {
	if _, ok := Thread(); !ok {
		t.Skip("no thread CPU clock on " + runtime.GOOS)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0, _ := Thread()
	worked := make(chan time.Duration)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		w0, _ := Thread()
		if !spin(100 * time.Millisecond) {
			worked <- 0
			return
		}
		w1, _ := Thread()
		worked <- w1 - w0
	}()
	w := <-worked
	c1, _ := Thread()
	require.GreaterOrEqual(t, w, 100*time.Millisecond)
	require.Less(t, c1-c0, w/2, "the waiting thread was charged for the worker's CPU")
}

// Process counts the work of every thread.
func TestProcess_CountsEveryThread(t *testing.T) {
	p0, err := Process()
	require.NoError(t, err)
	worked := make(chan time.Duration)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		w0 := Clock()
		if !spin(100 * time.Millisecond) {
			worked <- 0
			return
		}
		worked <- Clock() - w0
	}()
	w := <-worked
	p1, err := Process()
	require.NoError(t, err)
	require.GreaterOrEqual(t, w, 100*time.Millisecond, "the worker spun")
	if _, ok := Thread(); ok {
		// rusage's split into user and system time is rounded: allow a
		// few per cent.
		require.GreaterOrEqual(t, p1-p0, w*9/10)
	} else {
		require.Positive(t, p1-p0)
	}
}

func TestClock_NeverGoesBack(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prev := Clock()
	for range 10_000 {
		c := Clock()
		require.GreaterOrEqual(t, c, prev)
		prev = c
	}
}
