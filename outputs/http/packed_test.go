package http

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/internal/units"
	"github.com/kplagent/agent/outputs"
	"github.com/kplagent/agent/outputs/internal/batchtest"
)

// packedFrame is one frame as the test receiver reads it.
type packedFrame struct {
	pk, ehk string
	data    []byte
}

// readPacked parses a raw-packed body by the layout documented in doc.go,
// written here independently of ParsePacked: u32 data length, u16
// partition key length, u8 explicit hash key length (big endian), the
// partition key, the explicit hash key, the data.
func readPacked(body []byte) ([]packedFrame, error) {
	var out []packedFrame
	r := bytes.NewReader(body)
	for r.Len() > 0 {
		var h struct {
			DataLen uint32
			PKLen   uint16
			EHKLen  uint8
		}
		if err := binary.Read(r, binary.BigEndian, &h); err != nil {
			return nil, fmt.Errorf("frame %d header: %w", len(out), err)
		}
		f := packedFrame{}
		pk := make([]byte, h.PKLen)
		ehk := make([]byte, h.EHKLen)
		f.data = make([]byte, h.DataLen)
		for _, p := range [][]byte{pk, ehk, f.data} {
			if _, err := io.ReadFull(r, p); err != nil {
				return nil, fmt.Errorf("frame %d: %w", len(out), err)
			}
		}
		f.pk, f.ehk = string(pk), string(ehk)
		out = append(out, f)
	}
	return out, nil
}

// packedReceiver is an http.Handler that decodes raw-packed requests (gzip
// and zstd bodies too) down to their user records, refusing requests larger
// than maxBody with 413 and any holding a user record that starts with
// "bad" with 400.
type packedReceiver struct {
	t       *testing.T
	maxBody int

	mu       sync.Mutex
	users    []string // user records received, in order
	requests int
	frames   []int // Kinesis records per accepted request
	refused  int
}

func (p *packedReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch r.Header.Get("Content-Encoding") {
	case "zstd":
		d, err := zstd.NewReader(nil)
		require.NoError(p.t, err)
		body, err = d.DecodeAll(body, nil)
		d.Close()
		if err != nil {
			http.Error(w, "bad zstd: "+err.Error(), http.StatusBadRequest)
			return
		}
	case "":
	default:
		http.Error(w, "unexpected encoding", http.StatusUnsupportedMediaType)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	if r.Header.Get("Content-Type") != PackedContentType {
		http.Error(w, "content type "+r.Header.Get("Content-Type"), http.StatusUnsupportedMediaType)
		return
	}
	if p.maxBody > 0 && len(body) > p.maxBody {
		p.refused++
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		return
	}
	frames, err := readPacked(body)
	if err != nil {
		p.refused++
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var users []string
	for _, f := range frames {
		recs, err := aggregate.DecodeKinesisRecord(f.pk, f.ehk, f.data)
		if err != nil { // checks the KPL magic and MD5
			p.refused++
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, u := range recs {
			if strings.HasPrefix(string(u.Data), "bad") {
				p.refused++
				http.Error(w, "bad record", http.StatusBadRequest)
				return
			}
			users = append(users, string(u.Data))
		}
	}
	p.users = append(p.users, users...)
	p.frames = append(p.frames, len(frames))
	w.WriteHeader(http.StatusNoContent)
}

func (p *packedReceiver) received() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.users...)
}

// userLines makes n distinct user records.
func userLines(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("line %05d %s", i, strings.Repeat("x", i%50))
	}
	return out
}

func TestSendPacked_ManyAggregatesPerRequestEveryRecordArrives(t *testing.T) {
	t.Parallel()
	data := userLines(3000)
	b := batchtest.Build(t, 0, 4<<10, batchtest.Records(data...)...)
	require.Greater(t, len(b.Records), 20)
	for _, comp := range []string{CompressionNone, CompressionZstd, CompressionGzip} {
		t.Run(comp, func(t *testing.T) {
			t.Parallel()
			rc := &recorder{}
			srv := startServer(t, rc)
			const limit = 32 << 10
			o := newOutput(t, config(srv.URL, func(c *Config) {
				c.Format, c.Compression, c.MaxRequestBytes = FormatRawPacked, comp, limit
			}))
			require.NoError(t, o.Send(t.Context(), b))

			var got []string
			frames := 0
			reqs := rc.requests()
			for _, r := range reqs {
				require.Equal(t, PackedContentType, r.Header.Get("Content-Type"))
				require.Equal(t, comp == CompressionGzip, r.Gzip)
				body := r.Body
				if comp == CompressionZstd {
					require.Equal(t, "zstd", r.Header.Get("Content-Encoding"))
					d, err := zstd.NewReader(nil)
					require.NoError(t, err)
					body, err = d.DecodeAll(body, nil)
					d.Close()
					require.NoError(t, err)
				}
				require.LessOrEqual(t, len(body), limit)
				fs, err := readPacked(body)
				require.NoError(t, err)
				for _, f := range fs {
					a := b.Records[frames]
					require.Equal(t, a.PartitionKey, f.pk)
					require.Equal(t, a.ExplicitHashKey, f.ehk)
					require.Equal(t, a.AppendKinesisData(nil), f.data, "the data is what raw sends")
					recs, err := aggregate.DecodeKinesisRecord(f.pk, f.ehk, f.data)
					require.NoError(t, err)
					for _, u := range recs {
						got = append(got, string(u.Data))
					}
					frames++
				}
			}
			require.Equal(t, len(b.Records), frames)
			require.Equal(t, data, got)
			require.Less(t, len(reqs), len(b.Records)/4, "aggregates are packed, not one per request")
		})
	}
}

func TestSendPacked_MatchesParsePacked(t *testing.T) {
	t.Parallel()
	b := batchtest.Build(t, 3, 0, batchtest.Records("a", "b", "c", "d", "e", "f", "g")...)
	b.Records = append(b.Records, aggregate.Aggregate{PartitionKey: strings.Repeat("k", 300), ExplicitHashKey: "12345", Body: []byte("plain"), Count: 1})
	var body []byte
	for i := range b.Records {
		var err error
		body, err = appendPackedFrame(body, &b.Records[i])
		require.NoError(t, err)
	}
	want, err := readPacked(body)
	require.NoError(t, err)
	got, err := ParsePacked(body)
	require.NoError(t, err)
	require.Len(t, got, len(want))
	for i := range want {
		require.Equal(t, want[i].pk, got[i].PartitionKey)
		require.Equal(t, want[i].ehk, got[i].ExplicitHashKey)
		require.Equal(t, want[i].data, got[i].Data)
	}
	for cut := 1; cut < 12; cut++ {
		_, err := ParsePacked(body[:len(body)-cut])
		require.Error(t, err, "cut %d", cut)
	}
}

func TestSendPacked_413SplitsBetweenAggregates(t *testing.T) {
	t.Parallel()
	data := userLines(2000)
	b := batchtest.Build(t, 0, 4<<10, batchtest.Records(data...)...)
	rcv := &packedReceiver{t: t, maxBody: 20 << 10}
	srv := startServerFunc(t, rcv.ServeHTTP)
	o := newOutput(t, config(srv.URL, func(c *Config) {
		c.Format, c.Compression, c.MaxRequestBytes = FormatRawPacked, CompressionNone, 64<<10
	}))

	require.NoError(t, o.Send(t.Context(), b))

	require.Equal(t, data, rcv.received(), "every record once, in order")
	require.Positive(t, rcv.refused)
	require.LessOrEqual(t, o.requestLimit(), 32<<10, "the 413 lowered the request size")

	// Later Sends pack to the learned limit: no more refusals.
	rcv.mu.Lock()
	refused := rcv.refused
	rcv.users = nil
	rcv.mu.Unlock()
	require.NoError(t, o.Send(t.Context(), b))
	require.Equal(t, data, rcv.received())
	require.Equal(t, refused, rcv.refused)
}

func TestSendPacked_BadRecordIsRejectedAloneInItsAggregate(t *testing.T) {
	t.Parallel()
	data := userLines(400)
	data[250] = "bad record"
	b := batchtest.Build(t, 20, 0, batchtest.Records(data...)...)
	require.Len(t, b.Records, 20)
	rcv := &packedReceiver{t: t}
	srv := startServerFunc(t, rcv.ServeHTTP)
	o := newOutput(t, config(srv.URL, func(c *Config) { c.Format, c.Compression = FormatRawPacked, CompressionZstd }))

	err := o.Send(t.Context(), b)

	// Aggregate 12 (records 240-259) is refused on its own with 400: it is
	// split as raw splits it, down to user record 10, which alone is
	// rejected with the server's answer; every other record arrives once.
	var re *outputs.RejectedRecordsError
	require.ErrorAs(t, err, &re)
	require.NoError(t, re.Err)
	require.Equal(t, []outputs.RejectedRecord{{Record: 12, UserRecord: 10, Reason: re.Rejected[0].Reason}}, re.Rejected)
	require.Contains(t, re.Rejected[0].Reason, "400 Bad Request: bad record")
	want := append(append([]string(nil), data[:250]...), data[251:]...)
	require.Equal(t, want, rcv.received())
}

func TestSendPacked_RetryableStopsTheSend(t *testing.T) {
	t.Parallel()
	data := userLines(60)
	b := batchtest.Build(t, 10, 0, batchtest.Records(data...)...)
	require.Len(t, b.Records, 6)
	rc := &recorder{script: []reply{{status: 200}, {status: 503}}}
	srv := startServer(t, rc)
	o := newOutput(t, config(srv.URL, func(c *Config) {
		c.Format, c.Compression, c.MaxRequestRecords = FormatRawPacked, CompressionNone, 2
	}))

	err := o.Send(t.Context(), b)

	require.Len(t, rc.requests(), 2, "nothing sent after the 503")
	pe := requirePartial(t, err, 2, 3, 4, 5)
	require.False(t, outputs.IsPermanent(pe.Err))
	fs, err := readPacked(rc.requests()[0].Body)
	require.NoError(t, err)
	require.Len(t, fs, 2, "max_request_records counts Kinesis records")
}

func TestSendPacked_LimitsBodySize(t *testing.T) {
	t.Parallel()
	b := batchtest.Build(t, 0, 2<<10, batchtest.Records(userLines(500)...)...)
	rc := &recorder{}
	srv := startServer(t, rc)
	o := newOutput(t, config(srv.URL, func(c *Config) {
		c.Format, c.Compression, c.MaxRequestBytes = FormatRawPacked, CompressionNone, units.ByteSize(8<<10)
	}))
	require.NoError(t, o.Send(t.Context(), b))
	total := 0
	for _, r := range rc.requests() {
		require.LessOrEqual(t, len(r.Body), 8<<10)
		fs, err := readPacked(r.Body)
		require.NoError(t, err)
		require.GreaterOrEqual(t, len(fs), 2, "as many as fit")
		total += len(fs)
	}
	require.Equal(t, len(b.Records), total)
}

func TestSendPacked_KeyTooLongForAFrameIsRejectedAlone(t *testing.T) {
	t.Parallel()
	b := plainBatch("a", "b", "c")
	b.Records[1].PartitionKey = strings.Repeat("k", 1<<16) // no aggregator makes this
	rcv := &packedReceiver{t: t}
	srv := startServerFunc(t, rcv.ServeHTTP)
	o := newOutput(t, config(srv.URL, func(c *Config) { c.Format, c.Compression = FormatRawPacked, CompressionNone }))

	err := o.Send(t.Context(), b)

	pe := requirePartial(t, err, 1)
	require.True(t, outputs.IsPermanent(pe.Err))
	require.Contains(t, pe.Reasons[0], "too long for a raw-packed frame")
	require.Equal(t, []string{"a", "c"}, rcv.received())
}
