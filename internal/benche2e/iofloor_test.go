package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Every row of -io-floor runs on a few MiB and leaves no segment behind but
// the files a recycled row turns.
func TestIOFloorRows(t *testing.T) {
	const size = 3 << 20
	for _, rw := range ioFloorRows {
		t.Run(rw.name, func(t *testing.T) {
			dir := t.TempDir()
			if rw.recycle {
				require.NoError(t, makeSpareFiles(dir, 3, floorSegment(size)))
			}
			require.NoError(t, ioFloorChild(rw.name, dir, size))
			names, err := filepath.Glob(filepath.Join(dir, "seg-*"))
			require.NoError(t, err)
			if rw.recycle {
				// The three files, each renamed once per segment.
				all, err := os.ReadDir(dir)
				require.NoError(t, err)
				require.Len(t, all, 3)
			} else {
				require.Empty(t, names)
			}
		})
	}
}

func TestFloorSegment(t *testing.T) {
	require.Equal(t, int64(64<<20), floorSegment(512<<20))
	require.Equal(t, int64(3<<20), floorSegment(3<<20))
	require.Equal(t, int64(3<<20), floorSegment(3<<20-5))
	require.Equal(t, int64(1<<20), floorSegment(10))
}
