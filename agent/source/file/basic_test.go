package file

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRead_LinesOfExistingAndAppendedFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	writeFile(t, p, "one\ntwo\r\nthree\n")
	r := start(t, testConfig(dir, "*.log"), Settings{})
	r.waitCount(t, 3)
	appendFile(t, p, "four\n\nsix\n")
	r.waitCount(t, 6)
	require.NoError(t, r.halt(t))
	require.Equal(t, []string{"one", "two", "three", "four", "", "six"}, r.col.lines())
	recs := r.col.records()
	require.Equal(t, int64(0), recs[0].cursor.Start)
	require.Equal(t, int64(4), recs[0].cursor.Offset)
	require.Equal(t, int64(4), recs[1].cursor.Start)
	require.Equal(t, int64(9), recs[1].cursor.Offset)
}
