package sharedindex

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
)

// A value is the span of one response id as Redis keeps it: fixed-width
// fields first, so that put.lua compares spans by position without a JSON
// decoder, then the project and span name as a JSON array.
//
//	offset  width  field
//	0       1      format version, "1"
//	1       32     trace id, hex
//	33      16     span id, hex
//	49      16     parent span id, hex (zeros for a root span)
//	65      20     start time, Unix nanoseconds, zero-padded decimal
//	85      20     seen time (when a replica indexed it), the same
//	105     -      ["project","name"]
//
// put.lua's offsets are these plus one (Lua counts from 1).
const (
	formatVersion = '1'
	offTrace      = 1
	offSpan       = offTrace + 32
	offParent     = offSpan + 16
	offStart      = offParent + 16
	offSeen       = offStart + 20
	offNames      = offSeen + 20
)

func encode(s index.Span) string {
	names, _ := json.Marshal([2]string{s.Project, s.Name}) // strings always encode
	b := make([]byte, 0, offNames+len(names))
	b = append(b, formatVersion)
	b = hex.AppendEncode(b, s.TraceID[:])
	b = hex.AppendEncode(b, s.SpanID[:])
	b = hex.AppendEncode(b, s.ParentID[:])
	b = appendPadded(b, uint64(s.Start))
	b = appendPadded(b, uint64(max(s.Seen.UnixNano(), 0)))
	return string(append(b, names...))
}

func appendPadded(b []byte, v uint64) []byte {
	var d [20]byte
	s := strconv.AppendUint(d[:0], v, 10)
	for range 20 - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

var errFormat = errors.New("not a value of this format")

func decode(v string) (index.Span, error) {
	var s index.Span
	if len(v) < offNames || v[0] != formatVersion {
		return s, errFormat
	}
	if err := decodeHex(s.TraceID[:], v[offTrace:offSpan]); err != nil {
		return s, fmt.Errorf("trace id: %w", err)
	}
	if err := decodeHex(s.SpanID[:], v[offSpan:offParent]); err != nil {
		return s, fmt.Errorf("span id: %w", err)
	}
	if err := decodeHex(s.ParentID[:], v[offParent:offStart]); err != nil {
		return s, fmt.Errorf("parent id: %w", err)
	}
	start, err := strconv.ParseUint(v[offStart:offSeen], 10, 64)
	if err != nil {
		return s, fmt.Errorf("start: %w", err)
	}
	seen, err := strconv.ParseInt(v[offSeen:offNames], 10, 64)
	if err != nil {
		return s, fmt.Errorf("seen: %w", err)
	}
	var names [2]string
	if err := json.Unmarshal([]byte(v[offNames:]), &names); err != nil {
		return s, fmt.Errorf("names: %w", err)
	}
	s.Start, s.Seen = pcommon.Timestamp(start), time.Unix(0, seen)
	s.Project, s.Name = names[0], names[1]
	return s, nil
}

func decodeHex(dst []byte, s string) error {
	if len(s) != 2*len(dst) {
		return errFormat
	}
	_, err := hex.Decode(dst, []byte(s))
	return err
}
