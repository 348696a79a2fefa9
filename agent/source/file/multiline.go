package file

import (
	"regexp"
	"time"
)

// mlRules is a compiled MultilineConfig.
type mlRules struct {
	re       *regexp.Regexp
	start    bool // re marks the first line of a record (else: continuation lines)
	negate   bool
	maxLines int
	maxBytes int
	timeout  time.Duration
}

func newMLRules(c *MultilineConfig, maxRecord int) (*mlRules, error) {
	if c == nil {
		return nil, nil
	}
	m := c.withDefaults(0)
	r := &mlRules{start: m.Start != "", negate: m.Negate, maxLines: m.MaxLines, maxBytes: int(m.MaxBytes), timeout: m.Timeout}
	if r.maxBytes == 0 {
		r.maxBytes = maxRecord
	}
	expr := m.Start
	if !r.start {
		expr = m.Continue
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, err
	}
	r.re = re
	return r, nil
}

// joins reports whether line continues the record in progress.
func (r *mlRules) joins(line []byte) bool {
	matched := r.re.Match(line) != r.negate
	if r.start {
		return !matched
	}
	return matched
}

// mlState is a file's record in progress: lines joined by "\n".
type mlState struct {
	buf   []byte
	lines int
	start int64 // file offset of the first line
	end   int64 // file offset after the last line's terminator
	last  time.Time
}

// mlShrinkAbove is the capacity beyond which an idle record buffer is
// released rather than kept for reuse.
const mlShrinkAbove = 64 << 10
