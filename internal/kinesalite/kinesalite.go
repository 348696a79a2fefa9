// Package kinesalite runs the kinesalite Kinesis emulator (npm, installed by
// `make npm-deps` into test/npm) for tests: start it on a free loopback
// port with a fresh in-memory store, create streams, and read every record
// of a stream back, with the hash key range of the shard each came from.
// Tests only; it is never part of the agent's binary.
package kinesalite

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/kplagent/agent/aggregate"
)

// Credentials and region the emulator is reached with (it checks neither).
const (
	AccessKeyID     = "AKIDKINESALITE"
	SecretAccessKey = "kinesalite-secret"
	Region          = "us-east-1"
)

// Server is a running kinesalite.
type Server struct {
	Endpoint string          // http://127.0.0.1:PORT
	Client   *kinesis.Client // with static credentials, SDK retries on
}

// NPMDir returns the test/npm directory of the module.
func NPMDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "test", "npm")
}

// Start starts kinesalite with a fresh in-memory store on a free port of
// 127.0.0.1 and stops it when the test ends. It skips the test when node is
// not installed (CI has it), and fails it when kinesalite is not (run
// `make npm-deps`).
func Start(tb testing.TB) *Server {
	tb.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		tb.Skip("node (Node.js) is not installed: the kinesalite tests need it")
	}
	mod := filepath.Join(NPMDir(), "node_modules", "kinesalite")
	if _, err := os.Stat(filepath.Join(mod, "index.js")); err != nil {
		tb.Fatalf("kinesalite is not installed: run `make npm-deps` (npm ci --prefix test/npm): %v", err)
	}
	var lastErr error
	for range 3 { // the free port may be taken between probe and listen
		s, err := start(tb, node, mod)
		if err == nil {
			return s
		}
		lastErr = err
	}
	tb.Fatalf("kinesalite: %v", lastErr)
	return nil
}

func start(tb testing.TB, node, mod string) (*Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	// Bound to loopback only (the CLI listens on every interface), streams
	// ACTIVE at once, room for reshards and for streams of hundreds of shards.
	script := fmt.Sprintf(`require(%q)({createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 1000})`+
		`.listen(%d, '127.0.0.1', function() { console.log('Listening') })`, mod, port)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, node, "-e", script)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Listening") {
				ready <- nil
				for sc.Scan() { // drain
				}
				return
			}
		}
		ready <- errors.New("exited before listening")
	}()
	stop := func() {
		cancel()
		_ = cmd.Wait()
	}
	select {
	case err := <-ready:
		if err != nil {
			stop()
			return nil, err
		}
	case <-time.After(30 * time.Second):
		stop()
		return nil, errors.New("not listening after 30s")
	}
	tb.Cleanup(stop)
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := kinesis.New(kinesis.Options{
		Region:       Region,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
	}, func(o *kinesis.Options) { o.Protocol = getRecordsProtocol{o.Protocol} })
	return &Server{Endpoint: endpoint, Client: client}, nil
}

// Env returns the environment a child process (the agent's binary) needs
// to reach the emulator with the SDK's default chain: static credentials and
// the region. Its output block still needs endpoint: s.Endpoint.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + SecretAccessKey,
		"AWS_REGION=" + Region,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// Lines returns the data of every user record a KCL consumer of the stream
// would see (see KeptByKCL), in shard and sequence order, and an error
// naming the first user record a KCL would drop, if any. For end-to-end
// tests: compare with the lines written.
func (s *Server) Lines(tb testing.TB, stream string) ([]string, error) {
	tb.Helper()
	users := Deaggregate(tb, s.ReadAll(tb, stream))
	err := CheckKCL(users)
	kept := KeptByKCL(users)
	lines := make([]string, len(kept))
	for i, u := range kept {
		lines[i] = string(u.Data)
	}
	return lines, err
}

// CreateStream creates a stream of n shards and waits until it is ACTIVE.
func (s *Server) CreateStream(tb testing.TB, name string, n int) {
	tb.Helper()
	ctx := context.Background()
	if _, err := s.Client.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(int32(n))}); err != nil {
		tb.Fatalf("kinesalite: CreateStream %s: %v", name, err)
	}
	s.WaitActive(tb, name)
}

// WaitActive waits until the stream is ACTIVE (after a create or reshard).
func (s *Server) WaitActive(tb testing.TB, name string) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := s.Client.DescribeStreamSummary(context.Background(), &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		if err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("kinesalite: stream %s not ACTIVE after 30s (last error: %v)", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Shards returns every shard of the stream, open and closed.
func (s *Server) Shards(tb testing.TB, name string) []types.Shard {
	tb.Helper()
	var shards []types.Shard
	in := &kinesis.ListShardsInput{StreamName: aws.String(name)}
	for {
		out, err := s.Client.ListShards(context.Background(), in)
		if err != nil {
			tb.Fatalf("kinesalite: ListShards %s: %v", name, err)
		}
		shards = append(shards, out.Shards...)
		if out.NextToken == nil {
			return shards
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
}

// Record is a Kinesis record read back, with the shard it was read from.
type Record struct {
	Shard           aggregate.Shard // ID and hash key range
	PartitionKey    string
	ExplicitHashKey string // as sent, when kinesalite reports it ("" otherwise)
	Data            []byte
	SequenceNumber  string
}

// ReadAll reads every record of every shard (open and closed) from the
// trim horizon, shard after shard, in sequence order within a shard. Call
// it once everything was written.
func (s *Server) ReadAll(tb testing.TB, name string) []Record {
	tb.Helper()
	ctx := context.Background()
	var recs []Record
	for _, sh := range s.Shards(tb, name) {
		start, err1 := aggregate.ParseHashKey(aws.ToString(sh.HashKeyRange.StartingHashKey))
		end, err2 := aggregate.ParseHashKey(aws.ToString(sh.HashKeyRange.EndingHashKey))
		if err := errors.Join(err1, err2); err != nil {
			tb.Fatalf("kinesalite: shard %s: %v", aws.ToString(sh.ShardId), err)
		}
		shard := aggregate.Shard{ID: aws.ToString(sh.ShardId), Start: start, End: end}
		it, err := s.Client.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
			StreamName: aws.String(name), ShardId: sh.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
		})
		if err != nil {
			tb.Fatalf("kinesalite: GetShardIterator %s: %v", shard.ID, err)
		}
		iter := it.ShardIterator
		for iter != nil {
			out, err := s.Client.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(10000)})
			if err != nil {
				tb.Fatalf("kinesalite: GetRecords %s: %v", shard.ID, err)
			}
			for _, r := range out.Records {
				recs = append(recs, Record{Shard: shard, PartitionKey: aws.ToString(r.PartitionKey), Data: r.Data, SequenceNumber: aws.ToString(r.SequenceNumber)})
			}
			if len(out.Records) == 0 {
				break
			}
			iter = out.NextShardIterator
		}
	}
	return recs
}

// UserRecord is a user record read back: deaggregated from a Kinesis record
// of Shard.
type UserRecord struct {
	aggregate.Record
	Shard          aggregate.Shard
	SequenceNumber string // of the Kinesis record that held it
	// Plain: the Kinesis record was not a KPL aggregate. GetRecords does
	// not return a record's explicit hash key, and a KCL range-checks only
	// the sub-records of aggregates, so a plain record is always kept.
	Plain bool
}

// HashKey returns the hash key Kinesis (and the KCL) route the record by.
func (u UserRecord) HashKey() (aggregate.HashKey, error) {
	if u.ExplicitHashKey != "" {
		return aggregate.ParseHashKey(u.ExplicitHashKey)
	}
	return aggregate.PartitionKeyHash(u.PartitionKey), nil
}

// Deaggregate decodes the user records of recs with aggregate.Decode. A
// plain record keeps its own partition key.
func Deaggregate(tb testing.TB, recs []Record) []UserRecord {
	tb.Helper()
	var users []UserRecord
	for _, r := range recs {
		dec, err := aggregate.DecodeKinesisRecord(r.PartitionKey, r.ExplicitHashKey, r.Data)
		if err != nil {
			tb.Fatalf("kinesalite: record %s of shard %s: %v", r.SequenceNumber, r.Shard.ID, err)
		}
		plain := !aggregate.IsAggregated(r.Data)
		for _, d := range dec {
			users = append(users, UserRecord{Record: d, Shard: r.Shard, SequenceNumber: r.SequenceNumber, Plain: plain})
		}
	}
	return users
}

// CheckKCL returns an error naming the first user record that lies outside
// the hash key range of the shard it was read from (a KCL would drop the
// whole aggregate holding it), or nil.
func CheckKCL(users []UserRecord) error {
	for _, u := range users {
		if u.Plain {
			continue // its explicit hash key is not known here; the KCL keeps it
		}
		h, err := u.HashKey()
		if err != nil {
			return err
		}
		if !u.Shard.Contains(h) {
			return fmt.Errorf("user record %q (pk %q, ehk %q) read from shard %s, whose range %s..%s does not hold its hash key %s",
				truncate(u.Data), u.PartitionKey, u.ExplicitHashKey, u.Shard.ID, u.Shard.Start, u.Shard.End, h)
		}
	}
	return nil
}

// KeptByKCL returns the user records a KCL delivers: those of the Kinesis
// records whose every sub-record lies in the range of the shard they were
// read from (the KCL drops the others whole).
func KeptByKCL(users []UserRecord) []UserRecord {
	type key struct{ shard, seq string }
	bad := map[key]bool{}
	for _, u := range users {
		if u.Plain {
			continue
		}
		if h, err := u.HashKey(); err != nil || !u.Shard.Contains(h) {
			bad[key{u.Shard.ID, u.SequenceNumber}] = true
		}
	}
	var kept []UserRecord
	for _, u := range users {
		if !bad[key{u.Shard.ID, u.SequenceNumber}] {
			kept = append(kept, u)
		}
	}
	return kept
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}
