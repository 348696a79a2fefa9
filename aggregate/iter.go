package aggregate

import (
	"fmt"
	"unsafe"
)

// ForEach calls fn for every user record in a, in order, without verifying an
// MD5 (a's Body comes from the spool, which has its own checksum). The slices
// passed to fn alias a.Body (and a's keys) and are valid only during the call;
// fn must not modify them. For a plain record (Aggregated false) fn is called
// once with a's own keys and Body; for a FramingLines aggregate once per
// line, with a's keys.
//
// An aggregated Body is validated whole before fn is first called: a
// malformed one, or one of another number of records than a.Count (when
// not 0), delivers no record; errors wrap ErrMalformed. ForEach stops
// at and returns the first error of fn. It does not allocate.
func ForEach(a *Aggregate, fn func(partitionKey, explicitHashKey, data []byte) error) error {
	if !a.Aggregated {
		return fn(readOnlyBytes(a.PartitionKey), readOnlyBytes(a.ExplicitHashKey), a.Body)
	}
	if a.Framing == FramingLines {
		return forEachLine(a, fn)
	}
	t := getTables()
	defer putTables(t)
	n, err := t.parse(a.Body)
	if err != nil {
		return err
	}
	if a.Count > 0 && n != a.Count {
		return fmt.Errorf("%w: %d records, the aggregate says %d", ErrMalformed, n, a.Count)
	}
	body := a.Body
	return t.each(body, func(r rawRecord) error {
		pk := t.pk[r.pkIdx]
		var ehk []byte
		if r.hasEHK {
			s := t.ehk[r.ehkIdx]
			ehk = body[s.off:s.end:s.end]
		}
		return fn(body[pk.off:pk.end:pk.end], ehk, r.data)
	})
}

// readOnlyBytes returns the bytes of s without copying them. They must not be
// modified.
func readOnlyBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
