package aggregate

import "errors"

// ForEach calls fn for every user record in a, in order, without verifying an
// MD5 (a's Body comes from the spool, which has its own checksum). The slices
// passed to fn alias a.Body and are valid only during the call. For a plain
// record (Aggregated false) fn is called once with a's own keys and Body.
// ForEach stops at and returns the first error of fn, or a decoding error.
//
// TODO(aggregate): implement (stub so dependants compile).
func ForEach(a *Aggregate, fn func(partitionKey, explicitHashKey, data []byte) error) error {
	if !a.Aggregated {
		return fn([]byte(a.PartitionKey), []byte(a.ExplicitHashKey), a.Body)
	}
	return errors.New("aggregate: ForEach not implemented yet")
}
