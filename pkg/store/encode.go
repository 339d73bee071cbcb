package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
)

const spanVersion = 1

// encodeSpan appends an index entry's value: fixed fields first, big endian,
// then the two strings with uvarint lengths.
//
//	version  1 byte (1)
//	seq      uint64   order of writing, to load in Add order
//	seen     int64    Span.Seen, Unix nanoseconds
//	trace    16 bytes
//	span     8 bytes
//	parent   8 bytes
//	start    uint64   Span.Start, Unix nanoseconds
//	project  uvarint length, bytes
//	name     uvarint length, bytes
//
// Binary rather than JSON: it is written for every indexed response, on the
// span path.
func encodeSpan(b []byte, seq uint64, s index.Span) []byte {
	b = append(b, spanVersion)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Seen.UnixNano()))
	b = append(b, s.TraceID[:]...)
	b = append(b, s.SpanID[:]...)
	b = append(b, s.ParentID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Start))
	b = binary.AppendUvarint(b, uint64(len(s.Project)))
	b = append(b, s.Project...)
	b = binary.AppendUvarint(b, uint64(len(s.Name)))
	b = append(b, s.Name...)
	return b
}

const fixedSpanLen = 1 + 8 + 8 + 16 + 8 + 8 + 8

var errShort = errors.New("truncated")

func decodeSpan(b []byte) (uint64, index.Span, error) {
	seq, s, project, name, err := splitSpan(b)
	if err != nil {
		return 0, s, err
	}
	s.Project, s.Name = string(project), string(name)
	return seq, s, nil
}

// splitSpan decodes an index entry's value but for its two strings, left
// in b: Open checks every entry with it, allocating nothing.
func splitSpan(b []byte) (seq uint64, s index.Span, project, name []byte, err error) {
	if len(b) < fixedSpanLen {
		return 0, s, nil, nil, errShort
	}
	if b[0] != spanVersion {
		return 0, s, nil, nil, fmt.Errorf("version %d", b[0])
	}
	seq = binary.BigEndian.Uint64(b[1:])
	s.Seen = time.Unix(0, int64(binary.BigEndian.Uint64(b[9:])))
	copy(s.TraceID[:], b[17:33])
	copy(s.SpanID[:], b[33:41])
	copy(s.ParentID[:], b[41:49])
	s.Start = pcommon.Timestamp(binary.BigEndian.Uint64(b[49:]))
	rest := b[fixedSpanLen:]
	if project, rest, err = readString(rest); err != nil {
		return 0, s, nil, nil, err
	}
	if name, rest, err = readString(rest); err != nil {
		return 0, s, nil, nil, err
	}
	if len(rest) != 0 {
		return 0, s, nil, nil, fmt.Errorf("%d bytes after the record", len(rest))
	}
	return seq, s, project, name, nil
}

func readString(b []byte) ([]byte, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, errShort
	}
	end := k + int(n)
	return b[k:end], b[end:], nil
}
