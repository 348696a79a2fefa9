package encode

import "github.com/kplagent/agent/internal/jsonstr"

// AppendJSONString appends s as a JSON string (quotes included) to dst.
//
// Bytes are taken as UTF-8. Control characters are escaped; every byte that
// is not part of a valid UTF-8 sequence is replaced by \ufffd (U+FFFD, the
// replacement character), as encoding/json does, so the output is always
// valid JSON. That replacement is lossy: a destination that needs binary data
// byte for byte must use a base64-carrying format instead.
func AppendJSONString(dst, s []byte) []byte { return jsonstr.Append(dst, s) }
