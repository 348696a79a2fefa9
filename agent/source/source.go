// Package source defines what the agent's inputs produce: ordered records with
// a typed cursor that the agent hands back once the record is durable.
package source

import "context"

// Cursor locates a record in its source so a checkpoint can resume after it.
// For files, FileID is an opaque key for one file's content (device, inode
// and a tag; confirmed by birth time and fingerprint), stable across renames
// and restarts; a file truncated under the reader (copytruncate) continues
// under a new FileID, its offsets starting again at 0. Offset is the byte
// offset just after the record (its line terminator included) and Start the
// byte offset where the record began.
type Cursor struct {
	FileID string
	Start  int64
	Offset int64
}

// Record is one user record. Data is only valid during the emit call that
// carries it: the consumer copies what it keeps. This is what lets sources
// reuse their read buffers and emit without allocating.
type Record struct {
	Data            []byte
	PartitionKey    string // optional: "" lets the flow choose
	ExplicitHashKey string // optional: decimal 0..2^128-1
	Cursor          Cursor
	// Path is the file the record was read from ("" for other sources),
	// for the envelope's file field.
	Path string
}

// Emit hands one record downstream. It blocks while downstream applies
// backpressure and returns ctx.Err() (or another error) when the record was not
// accepted; the source then stops.
type Emit func(ctx context.Context, r Record) error

// Source produces records in order.
//
// Run is called once; it returns after ctx is done (or, for a source with an
// end such as `agent tail --once`, when it reached the end), and never while
// an emit call is in flight.
type Source interface {
	Name() string
	Run(ctx context.Context, emit Emit) error
}

// EmitBatch hands records downstream in order, as as many Emit calls
// would, taking downstream's locks once for all of them. It returns how many
// were accepted: on an error, the records from that index on were not. The
// records' Data is only valid during the call.
type EmitBatch func(ctx context.Context, rs []Record) (int, error)

// BatchSource is implemented by sources that can emit a read's worth of
// records at once (a socket connection's 64 KiB read holds hundreds of
// lines): the agent calls RunBatch, with both forms of emit, instead of Run.
type BatchSource interface {
	Source
	RunBatch(ctx context.Context, emit Emit, batch EmitBatch) error
}

// Committer is implemented by sources that checkpoint: the agent calls Commit
// when every record of that file up to offset is durable (in the spool or
// acknowledged by the destination). Offsets per FileID only grow. Safe for
// concurrent use with Run.
type Committer interface {
	Commit(fileID string, offset int64)
}

// Binder is implemented by sources that listen on an address of the host
// (sockets). When a reload adds or changes such a source, the agent calls
// Bind before it stops anything, so that an address the source cannot have
// refuses the reload instead of stopping the agent once the new flow
// starts; Run then serves what Bind took. Release gives it back when Run
// will not be called (the reload failed or the agent stops). BindAddress
// names the address: a running source with the same one holds it until it
// stops, so that one is not bound ahead.
type Binder interface {
	BindAddress() string
	Bind() error
	Release()
}
