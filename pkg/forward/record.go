package forward

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp/wire"
)

// A queued record is: version byte, project length (uint16, little
// endian), project, the export in OTLP protobuf. The format outlives the
// process (a backlog is delivered after a restart, or an upgrade): change
// it only with a new version, still reading the old.
const recordVersion = 1

func encodeRecord(project string, body []byte) []byte {
	return append(recordHeader(project), body...)
}

// recordHeader is a record's bytes before the export: the queue appends
// the two as one record without copying the export.
func recordHeader(project string) []byte {
	if len(project) > 0xffff {
		project = project[:0xffff]
	}
	b := make([]byte, 0, 3+len(project))
	b = append(b, recordVersion)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(project)))
	return append(b, project...)
}

func decodeRecord(b []byte) (*otlp.Export, error) {
	if len(b) < 3 || b[0] != recordVersion {
		return nil, errors.New("unknown record version")
	}
	n := int(binary.LittleEndian.Uint16(b[1:3]))
	if len(b) < 3+n {
		return nil, fmt.Errorf("record of %d bytes is shorter than its project name", len(b))
	}
	e := &otlp.Export{Project: string(b[3 : 3+n]), Body: b[3+n:], Transport: "queue"}
	var err error
	if e.Spans, err = wire.Scan(e.Body, nil); err != nil {
		return nil, err
	}
	return e, nil
}
