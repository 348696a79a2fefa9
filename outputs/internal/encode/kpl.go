package encode

import (
	"crypto/md5"

	"github.com/kplagent/agent/aggregate"
)

// kplMagic starts every KPL aggregated record on the wire.
var kplMagic = [4]byte{0xF3, 0x89, 0x9A, 0xC2}

// AppendKinesisData appends the bytes Kinesis would store for a: the record's
// own data for a plain record, or magic + AggregatedRecord + MD5 of the
// AggregatedRecord for an aggregate.
//
// TODO(outputs): call aggregate.AppendKinesisData once the aggregate package
// exports it, and delete this copy.
func AppendKinesisData(dst []byte, a *aggregate.Aggregate) []byte {
	if !a.Aggregated {
		return append(dst, a.Body...)
	}
	dst = append(dst, kplMagic[:]...)
	dst = append(dst, a.Body...)
	sum := md5.Sum(a.Body)
	return append(dst, sum[:]...)
}
