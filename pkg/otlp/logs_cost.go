package otlp

import (
	"errors"
	"fmt"
)

// Decoding an OTLP logs export into pdata allocates far more than the
// export's size when it holds many small messages: an empty log record is
// two bytes on the wire and about 170 bytes decoded, an empty attribute two
// bytes and about 220 (pdata 1.71, with the slices' growth). So before
// pdata decodes a logs export, the receiver charges its budget for what the
// decoding may take, counted from the export's structure: a few bytes of
// input can no more hold megabytes than a gzip bomb can. Traces never take
// this path: package wire reads them where they lie.
const (
	// decodedMessageBytes bounds what pdata allocates for one message it
	// decodes (a record, an attribute...), its slot in its parent's slice
	// included: 225 bytes measured at most.
	decodedMessageBytes = 256
	// decodedValueBytes bounds the same for an attribute's value (an
	// AnyValue: its slot in an array, or nothing in the attribute that
	// holds it; the oneof's wrapper is charged as a field): 90 measured.
	decodedValueBytes = 96
	// decodedFieldBytes bounds what pdata allocates for any other field: a
	// oneof value's wrapper, a string's header.
	decodedFieldBytes = 32
	// decodedElementBytes bounds what pdata allocates for an element of a
	// repeated string (an entity ref's keys): its slot in a slice that
	// grows by doubling, 78 bytes measured at most.
	decodedElementBytes = 96
)

// logsKind is a message of the OTLP logs export (opentelemetry-proto v1,
// collector/logs/v1 and the messages it holds), as pdata 1.71 decodes it.
type logsKind uint8

const (
	kindRequest logsKind = iota + 1
	kindResourceLogs
	kindResource
	kindEntityRef
	kindScopeLogs
	kindScope
	kindLogRecord
	kindKeyValue
	kindAnyValue
	kindArrayValue
	kindKeyValueList
)

// logsSchema lists, for each message, its fields that are messages. Other
// fields (scalars, strings, bytes, fields pdata does not know) are skipped
// as pdata skips them.
var logsSchema = [...]map[int32]logsKind{
	kindRequest:      {1: kindResourceLogs},
	kindResourceLogs: {1: kindResource, 2: kindScopeLogs, 1000: kindScopeLogs}, // 1000: instrumentation_library_logs, before OTLP 0.19
	kindResource:     {1: kindKeyValue, 3: kindEntityRef},
	kindEntityRef:    {},
	kindScopeLogs:    {1: kindScope, 2: kindLogRecord},
	kindScope:        {3: kindKeyValue},
	kindLogRecord:    {5: kindAnyValue, 6: kindKeyValue},
	kindKeyValue:     {2: kindAnyValue},
	kindAnyValue:     {5: kindArrayValue, 6: kindKeyValueList},
	kindArrayValue:   {1: kindAnyValue},
	kindKeyValueList: {1: kindKeyValue},
}

// maxValueDepth is pdata's limit on nested attribute values (key-values,
// values, arrays and lists within each other): it refuses deeper ones.
const maxValueDepth = 100

// errLogsTruncated is the error of an export cut short or framed wrongly.
var errLogsTruncated = errors.New("unexpected end of the message")

// logsProtoCost returns how many bytes pdata may allocate at most to decode
// body, an ExportLogsServiceRequest in protobuf: the body's size (strings
// and bytes are copied) plus decodedMessageBytes per message and
// decodedFieldBytes per other field. It reads the framing as pdata does, so
// that a body it refuses pdata would refuse too; pdata still checks the
// rest (the types of scalar fields).
func logsProtoCost(body []byte) (int64, error) {
	c := logsCounter{}
	if err := c.walk(body, kindRequest, 0); err != nil {
		return 0, err
	}
	return copiedBytes(body) + c.messages*decodedMessageBytes + c.values*decodedValueBytes +
		c.fields*decodedFieldBytes + c.elements*decodedElementBytes, nil
}

// copiedBytes bounds what the strings and bytes copied out of body take:
// their size, rounded up to the allocator's size classes (at most a
// quarter more).
func copiedBytes(body []byte) int64 { return int64(len(body)) * 5 / 4 }

type logsCounter struct{ messages, values, fields, elements int64 }

// walk counts the fields of b, a message of kind k; depth is how deeply
// attribute values nest around it.
func (c *logsCounter) walk(b []byte, k logsKind, depth int) error {
	switch k {
	case kindKeyValue, kindAnyValue, kindArrayValue, kindKeyValueList:
		if depth >= maxValueDepth {
			return fmt.Errorf("attribute values nested more than %d deep", maxValueDepth)
		}
		depth++
	}
	schema := logsSchema[k]
	for pos := 0; pos < len(b); {
		num, typ, next, err := consumeTag(b, pos)
		if err != nil {
			return err
		}
		pos = next
		child, isMessage := schema[num]
		if !isMessage {
			if k == kindEntityRef {
				c.elements++ // all its fields are strings, two repeated
			} else {
				c.fields++
			}
			if pos, err = skipField(b, pos, typ); err != nil {
				return err
			}
			continue
		}
		if typ != wireLen {
			return fmt.Errorf("field %d has wire type %d, want a message", num, typ)
		}
		n, next, err := consumeLen(b, pos)
		if err != nil {
			return err
		}
		if child == kindAnyValue {
			c.values++
		} else {
			c.messages++
		}
		if err := c.walk(b[next-n:next], child, depth); err != nil {
			return err
		}
		pos = next
	}
	return nil
}

// Protobuf wire types.
const (
	wireVarint     = 0
	wireI64        = 1
	wireLen        = 2
	wireStartGroup = 3
	wireEndGroup   = 4
	wireI32        = 5
)

func consumeVarint(b []byte, pos int) (uint64, int, error) {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if shift >= 64 {
			return 0, 0, errors.New("varint overflows 64 bits")
		}
		if pos >= len(b) {
			return 0, 0, errLogsTruncated
		}
		x := b[pos]
		pos++
		v |= uint64(x&0x7f) << shift
		if x < 0x80 {
			return v, pos, nil
		}
	}
}

// consumeTag reads a field's tag; its number is taken as pdata takes it
// (32 bits, positive).
func consumeTag(b []byte, pos int) (num int32, typ uint8, next int, err error) {
	tag, next, err := consumeVarint(b, pos)
	if err != nil {
		return 0, 0, 0, err
	}
	num = int32(tag >> 3)
	if num <= 0 {
		return 0, 0, 0, fmt.Errorf("invalid field number %d", num)
	}
	return num, uint8(tag & 7), next, nil
}

// consumeLen reads a length-delimited field's length; next is past its
// content.
func consumeLen(b []byte, pos int) (n, next int, err error) {
	v, pos, err := consumeVarint(b, pos)
	if err != nil {
		return 0, 0, err
	}
	if v > uint64(len(b)-pos) {
		return 0, 0, errLogsTruncated
	}
	return int(v), pos + int(v), nil
}

// skipField skips the value of a field of wire type typ as pdata skips the
// fields it does not know. pdata skips a group up to the first field in it
// that is not a group, wherever the group ends: so does skipField.
func skipField(b []byte, pos int, typ uint8) (int, error) {
	groups := 0
	for {
		switch typ {
		case wireVarint:
			_, next, err := consumeVarint(b, pos)
			return next, err
		case wireI64:
			return fixed(b, pos, 8)
		case wireLen:
			_, next, err := consumeLen(b, pos)
			return next, err
		case wireI32:
			return fixed(b, pos, 4)
		case wireStartGroup:
			groups++
		case wireEndGroup:
			if groups == 0 {
				return 0, errors.New("unexpected end of group")
			}
			groups--
		default:
			return 0, fmt.Errorf("invalid wire type %d", typ)
		}
		if groups == 0 {
			return pos, nil
		}
		if pos >= len(b) {
			return 0, errLogsTruncated
		}
		var err error
		if _, typ, pos, err = consumeTag(b, pos); err != nil {
			return 0, err
		}
	}
}

func fixed(b []byte, pos, n int) (int, error) {
	if len(b)-pos < n {
		return 0, errLogsTruncated
	}
	return pos + n, nil
}
