package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/kplagent/agent/agent/source"
)

// tap lets an operator watch a sample of the records passing a flow (`agent
// tap FLOW`, GET /tap?flow=NAME&rate=N on the admin endpoint). Nobody
// tapping costs each record one atomic load.
type tap struct {
	subs atomic.Int32 // subscribers: the only thing read per record when 0
	mu   sync.Mutex
	set  map[*tapSub]struct{}
	gone chan struct{} // closed when a reload removed the flow (ended)
}

// ended returns a channel closed once the flow is removed.
func (t *tap) ended() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gone == nil {
		t.gone = make(chan struct{})
	}
	return t.gone
}

// end ends the streams of the flow's taps (a reload removed the flow).
func (t *tap) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gone == nil {
		t.gone = make(chan struct{})
	}
	select {
	case <-t.gone:
	default:
		close(t.gone)
	}
}

// TapRecord is one sampled record, a line of /tap's NDJSON stream.
type TapRecord struct {
	Time         time.Time `json:"time"`
	Flow         string    `json:"flow"`
	Source       string    `json:"source"`
	PartitionKey string    `json:"partition_key,omitempty"`
	// Data is the record as read (text; invalid UTF-8 is replaced), or
	// DataBase64 when it is not text.
	Data       string `json:"data,omitempty"`
	DataBase64 []byte `json:"data_base64,omitempty"`
}

type tapSub struct {
	ch     chan TapRecord
	rate   float64 // records per second
	tokens float64
	last   time.Time
}

// tapBuffer is how many sampled records wait for a slow reader before
// more are skipped.
const tapBuffer = 256

// maxTapRate caps the sample rate a client may ask for.
const maxTapRate = 1000

// wrap returns emit with the tap in front of it.
func (t *tap) wrap(flow, src string, emit source.Emit) source.Emit {
	return func(ctx context.Context, r source.Record) error {
		if t.subs.Load() > 0 {
			t.offer(flow, src, r)
		}
		return emit(ctx, r)
	}
}

// wrapBatch is wrap for a batch emit.
func (t *tap) wrapBatch(flow, src string, emit source.EmitBatch) source.EmitBatch {
	return func(ctx context.Context, rs []source.Record) (int, error) {
		if t.subs.Load() > 0 {
			for _, r := range rs {
				t.offer(flow, src, r)
			}
		}
		return emit(ctx, rs)
	}
}

func (t *tap) offer(flow, src string, r source.Record) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for s := range t.set {
		s.tokens = min(s.tokens+now.Sub(s.last).Seconds()*s.rate, max(s.rate, 1))
		s.last = now
		if s.tokens < 1 {
			continue
		}
		s.tokens--
		tr := TapRecord{Time: now, Flow: flow, Source: src, PartitionKey: r.PartitionKey}
		if utf8.Valid(r.Data) {
			tr.Data = string(r.Data)
		} else {
			tr.DataBase64 = append([]byte(nil), r.Data...)
		}
		select {
		case s.ch <- tr:
		default: // the reader is slow: skip
		}
	}
}

func (t *tap) subscribe(rate float64) *tapSub {
	s := &tapSub{ch: make(chan TapRecord, tapBuffer), rate: rate, tokens: 1, last: time.Now()}
	t.mu.Lock()
	if t.set == nil {
		t.set = map[*tapSub]struct{}{}
	}
	t.set[s] = struct{}{}
	t.mu.Unlock()
	t.subs.Add(1)
	return s
}

func (t *tap) unsubscribe(s *tapSub) {
	t.mu.Lock()
	delete(t.set, s)
	t.mu.Unlock()
	t.subs.Add(-1)
}

// serveTap streams a flow's sampled records as NDJSON until the client
// goes, the endpoint closes or this pipeline stops (a reload ends the
// stream: the client taps the new pipeline by asking again).
func (a *Agent) serveTap(w http.ResponseWriter, r *http.Request, quit <-chan struct{}) {
	name := r.URL.Query().Get("flow")
	var t *tap
	var names []string
	for _, fr := range a.runtimeFlows() {
		names = append(names, fr.cfg.Name)
		if fr.cfg.Name == name {
			t = fr.tap
		}
	}
	if t == nil {
		http.Error(w, "no flow "+strconv.Quote(name)+" (the flows: "+strings.Join(names, ", ")+")", http.StatusNotFound)
		return
	}
	rate := 10.0
	if v := r.URL.Query().Get("rate"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > maxTapRate {
			http.Error(w, "rate: want records per second in (0, 1000]", http.StatusBadRequest)
			return
		}
		rate = f
	}
	s := t.subscribe(rate)
	defer t.unsubscribe(s)
	gone := t.ended()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case <-quit:
			return
		case <-a.stopped: // the pipeline stopped
			return
		case <-gone: // a reload removed the flow
			return
		case tr := <-s.ch:
			if err := enc.Encode(tr); err != nil {
				return
			}
			if fl != nil && len(s.ch) == 0 {
				fl.Flush()
			}
		}
	}
}
