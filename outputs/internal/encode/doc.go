// Package encode holds the byte-level encoders shared by the outputs that
// deaggregate batches themselves (outputs/http, outputs/stdout, outputs/file):
// JSON strings of arbitrary bytes and the line formats (ndjson, kpl-json).
// Everything here appends to a caller's slice and allocates nothing per
// record.
package encode
