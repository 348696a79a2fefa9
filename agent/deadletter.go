package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/kplagent/agent/aggregate"
)

// DeadLetterFile is the name of the dead-letter file in the state directory.
const DeadLetterFile = "dead-letter.ndjson"

// DeadLetterRecord is one line of the dead-letter file: a user record the
// agent accepted but could not deliver, with the reason. Data is base64; Text
// repeats it as a string when it is valid UTF-8, for reading with jq.
type DeadLetterRecord struct {
	Time            time.Time `json:"time"`
	Flow            string    `json:"flow"`
	Output          string    `json:"output,omitempty"`
	Reason          string    `json:"reason"`
	PartitionKey    string    `json:"pk,omitempty"`
	ExplicitHashKey string    `json:"ehk,omitempty"`
	Data            []byte    `json:"data"`
	Text            *string   `json:"text,omitempty"`
}

// deadLetter appends records to the dead-letter file. Every write is synced
// before it returns: a record's spool entry (or file offset) is released only
// after it is durable here.
type deadLetter struct {
	path  string
	mu    sync.Mutex
	f     *os.File
	count atomic.Int64
}

func openDeadLetter(stateDir string) *deadLetter {
	return &deadLetter{path: filepath.Join(stateDir, DeadLetterFile)}
}

func (d *deadLetter) open() error {
	if d.f != nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(d.path), 0o700); err != nil {
		return fmt.Errorf("dead-letter: %w", err)
	}
	f, err := os.OpenFile(d.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("dead-letter: %w", err)
	}
	d.f = f
	return nil
}

func (d *deadLetter) write(recs func(emit func(DeadLetterRecord) error) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.open(); err != nil {
		return err
	}
	// A failed write (a full disk) is cut off again, so the file stays
	// one whole JSON object per line.
	start, err := d.f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("dead-letter: %w", err)
	}
	fail := func(err error) error {
		if terr := d.f.Truncate(start); terr != nil {
			err = errors.Join(err, terr)
		}
		return err
	}
	w := bufio.NewWriter(d.f)
	enc := json.NewEncoder(w)
	n := 0
	err = recs(func(r DeadLetterRecord) error {
		if utf8.Valid(r.Data) {
			t := string(r.Data)
			r.Text = &t
		}
		n++
		return enc.Encode(r)
	})
	if err != nil {
		return fail(fmt.Errorf("dead-letter: %w", err))
	}
	if err := w.Flush(); err != nil {
		return fail(fmt.Errorf("dead-letter: write %s: %w", d.path, err))
	}
	if err := d.f.Sync(); err != nil {
		return fail(fmt.Errorf("dead-letter: sync %s: %w", d.path, err))
	}
	d.count.Add(int64(n))
	return nil
}

func (d *deadLetter) writeRecord(flow, output, reason, pk, ehk string, data []byte) error {
	return d.write(func(emit func(DeadLetterRecord) error) error {
		return emit(DeadLetterRecord{Time: time.Now().UTC(), Flow: flow, Output: output, Reason: reason,
			PartitionKey: pk, ExplicitHashKey: ehk, Data: data})
	})
}

func (d *deadLetter) writeAggregate(flow, output, reason string, a *aggregate.Aggregate) error {
	now := time.Now().UTC()
	return d.write(func(emit func(DeadLetterRecord) error) error {
		err := aggregate.ForEach(a, func(pk, ehk, data []byte) error {
			return emit(DeadLetterRecord{Time: now, Flow: flow, Output: output, Reason: reason,
				PartitionKey: string(pk), ExplicitHashKey: string(ehk), Data: data})
		})
		if err != nil {
			// Keep the undecodable bytes whole rather than lose them.
			return emit(DeadLetterRecord{Time: now, Flow: flow, Output: output,
				Reason: reason + "; aggregate undecodable: " + err.Error(), Data: a.Body})
		}
		return nil
	})
}

func (d *deadLetter) writeRaw(flow, output, reason string, data []byte) error {
	return d.writeRecord(flow, output, reason, "", "", data)
}

func (d *deadLetter) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	return err
}
