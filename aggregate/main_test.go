package aggregate

import (
	"flag"
	"testing"

	"go.uber.org/goleak"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden and the fuzz seed corpus from the current encoder")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
