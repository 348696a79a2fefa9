// Package batchtest builds batches of real KPL aggregates for the outputs'
// tests and benchmarks.
package batchtest

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/kplagent/agent/aggregate"
	"github.com/kplagent/agent/outputs"
)

// Records makes user records with data[i] and partition key "pk<i>".
func Records(data ...string) []aggregate.Record {
	recs := make([]aggregate.Record, len(data))
	for i, d := range data {
		recs[i] = aggregate.Record{Data: []byte(d), PartitionKey: fmt.Sprintf("pk%d", i)}
	}
	return recs
}

// Build packs recs, in order, into Kinesis records of perAgg user records
// each (the last may hold fewer; one of a single record is plain), with a
// Builder whose single shard takes every hash key, so records of different
// partition keys share aggregates. maxBytes 0 is the Builder's default.
func Build(tb testing.TB, perAgg, maxBytes int, recs ...aggregate.Record) outputs.Batch {
	tb.Helper()
	return build(tb, aggregate.Config{MaxRecords: perAgg, MaxBytes: maxBytes}, recs)
}

// BuildLines is Build in the newline framing (aggregate.FramingLines), as a
// flow builds for outputs that write records one by one. Its aggregates
// stay in that framing while their records share keys and hold no "\n"
// (see LineRecords).
func BuildLines(tb testing.TB, perAgg, maxBytes int, recs ...aggregate.Record) outputs.Batch {
	tb.Helper()
	return build(tb, aggregate.Config{MaxRecords: perAgg, MaxBytes: maxBytes, Framing: aggregate.FramingLines}, recs)
}

// LineRecords makes user records with data[i], all with partition key "pk".
func LineRecords(data ...string) []aggregate.Record {
	recs := make([]aggregate.Record, len(data))
	for i, d := range data {
		recs[i] = aggregate.Record{Data: []byte(d), PartitionKey: "pk"}
	}
	return recs
}

func build(tb testing.TB, cfg aggregate.Config, recs []aggregate.Record) outputs.Batch {
	tb.Helper()
	all := aggregate.HashKey{Hi: math.MaxUint64, Lo: math.MaxUint64}
	shards, err := aggregate.NewShardMap([]aggregate.Shard{{ID: "shard-0", End: all}})
	if err != nil {
		tb.Fatal(err)
	}
	bld, err := aggregate.NewBuilder(cfg, shards)
	if err != nil {
		tb.Fatal(err)
	}
	var b outputs.Batch
	emit := func(_ int, a *aggregate.Aggregate) error {
		c := *a
		c.Body = append([]byte(nil), a.Body...) // a aliases the Builder's buffers
		b.Records = append(b.Records, c)
		return nil
	}
	now := time.Unix(0, 0)
	for _, r := range recs {
		if _, err := bld.Add(r, now, emit); err != nil {
			tb.Fatal(err)
		}
	}
	if err := bld.FlushAll(emit); err != nil {
		tb.Fatal(err)
	}
	return b
}
