//go:build !unix

package agent

import "os"

// dirWritable is not checked where faccessat is not available: run
// reports what it cannot create.
func dirWritable(string, os.FileInfo) (bool, error) { return false, nil }

// fileWritable is not checked either.
func fileWritable(string, os.FileInfo) (bool, error) { return false, nil }

// fileReadable is not checked either.
func fileReadable(string, os.FileInfo) (bool, error) { return false, nil }

// givenBackHint is not known without Unix ownership.
func givenBackHint(os.FileInfo, string) string { return "" }

// strangerInState needs Unix ownership.
func strangerInState(string, ...stateFile) string { return "" }

// stateFile is a file of the state directory the agent needs.
type stateFile struct {
	name string
	read bool
}

// ownParent needs Unix ownership.
func ownParent(string) string { return "" }
