package aggregate

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Errors for user records the Builder refuses. They are returned wrapped with
// detail; test them with errors.Is. A caller routes such a record to the
// dead-letter file: retrying cannot help.
var (
	// ErrRecordTooLarge: the record's data plus partition key exceed the
	// stream's record limit (Config.RecordLimit).
	ErrRecordTooLarge = errors.New("aggregate: record too large")
	// ErrPartitionKey: the partition key is empty, longer than 256 Unicode
	// characters, or not valid UTF-8.
	ErrPartitionKey = errors.New("aggregate: invalid partition key")
	// ErrExplicitHashKey: the explicit hash key is not a decimal integer
	// from 0 to 2^128-1.
	ErrExplicitHashKey = errors.New("aggregate: invalid explicit hash key")
	// ErrNoShard: the record's hash key falls in a gap of the shard map.
	ErrNoShard = errors.New("aggregate: no shard for hash key")
)

// MaxPartitionKeyChars is the longest partition key Kinesis accepts, in
// Unicode characters.
const MaxPartitionKeyChars = 256

// ValidatePartitionKey reports whether pk is a partition key Kinesis accepts:
// 1 to 256 Unicode characters of valid UTF-8. Errors wrap ErrPartitionKey.
//
// Invalid UTF-8 is refused because consumers hash the key's UTF-8 encoding:
// the KCL would compute another hash key than ours and drop the aggregate.
func ValidatePartitionKey(pk string) error {
	if pk == "" {
		return fmt.Errorf("%w: empty", ErrPartitionKey)
	}
	if !utf8.ValidString(pk) {
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrPartitionKey, truncateForError(pk))
	}
	// Every character takes at least one byte: only long keys need counting.
	if len(pk) > MaxPartitionKeyChars {
		if n := utf8.RuneCountInString(pk); n > MaxPartitionKeyChars {
			return fmt.Errorf("%w: %d characters, more than %d", ErrPartitionKey, n, MaxPartitionKeyChars)
		}
	}
	return nil
}
