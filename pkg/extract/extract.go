package extract

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp/wire"
)

// Attribute keys read by the extractor.
const (
	// AttrGenAIResponseID is set by instrumentations that follow the
	// OpenTelemetry GenAI conventions (openai-v2, OpenLLMetry, Elastic's).
	AttrGenAIResponseID = "gen_ai.response.id"
	// OpenInference records the provider's answer as JSON in output.value and
	// has no response-id attribute of its own.
	AttrOpenInferenceSpanKind = "openinference.span.kind"
	AttrOutputValue           = "output.value"
	AttrOutputMimeType        = "output.mime_type"
	// AttrProjectName is the resource attribute Phoenix routes spans by.
	AttrProjectName = "openinference.project.name"
)

// MaxExtraKeys is how many Extractor.ExtraKeys are looked for.
// It is what wire.Span.Lookup takes besides the keys every span is read
// for, so that the two cannot disagree.
const MaxExtraKeys = wire.MaxLookupKeys - len(lookupKeys)

// DefaultProject is where Phoenix puts spans that name no project.
const DefaultProject = "default"

// DefaultMaxOutputValue bounds the output.value the extractor parses. Larger
// values are skipped: the "id" is the first key OpenAI sends, and a sidecar
// should not spend its CPU on megabytes of model output.
const DefaultMaxOutputValue = 1 << 20

// MaxResponseIDLen is the longest response id that is indexed. OpenAI's are
// under 64 bytes; anything near this bound is not a response id.
const MaxResponseIDLen = 256

// Extractor finds response ids on spans.
type Extractor struct {
	// ExtraKeys are span attribute keys whose string values are indexed as
	// well, for apps that record a correlation key of their own. At most
	// MaxExtraKeys; the rest are not looked for.
	ExtraKeys []string
	// MaxOutputValue bounds the size of an output.value that is parsed;
	// zero means DefaultMaxOutputValue.
	MaxOutputValue int
}

// Extract returns one entry per response id found in td; see
// [Extractor.ExtractProto], which it calls on td in protobuf.
func (x Extractor) Extract(td ptrace.Traces, project string) []index.Entry {
	body, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		return nil
	}
	return x.ExtractProto(body, project)
}

// ExtractProto returns one entry per response id found in body, an OTLP
// ExportTraceServiceRequest (or TracesData: the same on the wire) in
// protobuf that [wire.Scan] has accepted. It reads the body where it lies,
// without decoding it: only the spans that carry an id cost an allocation.
// Of a body that is not well formed, it reads what comes before the flaw.
//
// project is the project the export was sent to (the x-project-name
// header), empty if none; a resource's openinference.project.name is used
// when it is empty, as Phoenix does.
//
// When several spans of one trace carry the same id, only the innermost is
// returned: the annotation belongs on the LLM call, not on the handler span
// around it that copied the id.
func (x Extractor) ExtractProto(body []byte, project string) []index.Entry {
	var entries []index.Entry
	proj, projOf := project, -1
	keys := lookupKeys[:]
	if len(x.ExtraKeys) > 0 {
		keys = append(keys[:len(keys):len(keys)], x.ExtraKeys...)
	}
	var buf [8]wire.Value
	vals := buf[:0]
	if len(keys) > len(buf) {
		vals = make([]wire.Value, 0, len(keys))
	}
	vals = vals[:len(keys)]
	wire.Walk(body, func(r *wire.Resource, s *wire.Span) {
		if project == "" && r.Index != projOf {
			proj, projOf = projectOf(r), r.Index
		}
		x.eachID(s, keys, vals, func(id string) {
			entries = append(entries, index.Entry{ResponseID: id, Span: spanOf(s, proj)})
		})
	})
	if len(entries) > 1 {
		entries = innermost(entries, body)
	}
	return entries
}

// innermost keeps, of the entries that share a response id, the inner one,
// in the place of the first. Only when an id repeats does it read the
// spans' parents from body.
func innermost(entries []index.Entry, body []byte) []index.Entry {
	byID := make(map[string]int, len(entries))
	var parents map[pcommon.SpanID]pcommon.SpanID
	kept := entries[:0]
	for _, e := range entries {
		pos, ok := byID[e.ResponseID]
		if !ok {
			byID[e.ResponseID] = len(kept)
			kept = append(kept, e)
			continue
		}
		if parents == nil {
			parents = parentMap(body)
		}
		if index.InnerThan(e.Span, kept[pos].Span, parents) {
			kept[pos] = e
		}
	}
	return kept
}

func projectOf(r *wire.Resource) string {
	for k, v := range r.Attributes() {
		if string(k) == AttrProjectName {
			if s, ok := v.Str(); ok && len(s) > 0 {
				return string(s)
			}
			break // the first one counts, as with pdata's Map.Get
		}
	}
	return DefaultProject
}

// The attributes the extractor reads on every span, then ExtraKeys; eachID
// finds their values at these places.
var lookupKeys = [...]string{AttrGenAIResponseID, AttrOpenInferenceSpanKind, AttrOutputMimeType, AttrOutputValue}

const genAI, kind, mime, output, extra = 0, 1, 2, 3, 4

// eachID calls fn for every distinct response id on s. keys are lookupKeys
// and ExtraKeys; vals is as long, for eachID's use.
func (x Extractor) eachID(s *wire.Span, keys []string, vals []wire.Value, fn func(string)) {
	var seen [4]string
	n := 0
	emit := func(id []byte) {
		if len(id) == 0 || len(id) > MaxResponseIDLen {
			return
		}
		for _, s := range seen[:n] {
			if s == string(id) {
				return
			}
		}
		str := string(id)
		if n < len(seen) {
			seen[n] = str
			n++
		}
		fn(str)
	}

	// One pass over the attributes for all the keys. The first attribute
	// of a key is the one that counts (pdata's Map.Get), whatever its
	// type.
	clear(vals)
	s.Lookup(keys, vals)
	if id, ok := vals[genAI].Str(); ok {
		emit(id)
	}
	if id, ok := x.openInferenceID(vals[kind], vals[mime], vals[output]); ok {
		emit(id)
	}
	for _, v := range vals[extra:] {
		if id, ok := v.Str(); ok {
			emit(id)
		}
	}
}

func (x Extractor) openInferenceID(kind, mime, output wire.Value) ([]byte, bool) {
	if k, ok := kind.Str(); !ok || string(k) != "LLM" {
		return nil, false
	}
	if m, ok := mime.Str(); !ok || !bytes.HasPrefix(m, []byte("application/json")) {
		return nil, false
	}
	out, ok := output.Str()
	if !ok {
		return nil, false
	}
	limit := x.MaxOutputValue
	if limit <= 0 {
		limit = DefaultMaxOutputValue
	}
	if len(out) > limit {
		return nil, false
	}
	id, err := topLevelID(out)
	return id, err == nil && len(id) > 0
}

var errNoObject = errors.New("not a JSON object")

// TopLevelID returns the string value of the top-level "id" key of the JSON
// object in s ("response_id" or "responseId" for Google's answers), or, in
// LangChain's LLMResult, the response_metadata "id" of its first
// generation's message (generations[0][0].message.kwargs.response_metadata.id):
// the first of them in the document. It reads only as far as that key and
// skips the other values without decoding them, so the usual OpenAI answer
// (where "id" comes first) costs a few tokens whatever the size of the
// completion; it follows no other path, so hostile nesting costs no more
// than skipping it.
func TopLevelID(s string) (string, error) {
	id, err := topLevelID([]byte(s))
	return string(id), err
}

// topLevelID is TopLevelID on the bytes of an attribute where they lie in
// the export; the id it returns may alias them.
func topLevelID(b []byte) ([]byte, error) {
	if id, ok := scanID(b); ok {
		return id, nil
	}
	return decodeID(b)
}

// decodeID is topLevelID with encoding/json's tokenizer: for whatever
// scanID leaves to it (escapes, non-ASCII ids, anything malformed).
func decodeID(b []byte) ([]byte, error) {
	dec := newDecoder(b)
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errNoObject
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errNoObject
		}
		if isIDKey([]byte(key)) {
			tok, err := dec.Token()
			if err != nil {
				return nil, err
			}
			id, _ := tok.(string) // an "id" that is not a string is no response id
			return []byte(id), nil
		}
		if key == langChainIDPath[0] {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, err
			}
			if id, ok := decodePath(raw, langChainIDPath[1:]); ok {
				return id, nil
			}
			continue
		}
		if err := skipValue(dec); err != nil {
			return nil, err
		}
	}
	return nil, io.EOF
}

// decodePath is scanPath with encoding/json's tokenizer, on one whole
// value: the string at path, if there is one. As in scanPath (and decodeID)
// the first member of a name counts.
func decodePath(raw []byte, path []string) ([]byte, bool) {
	dec := newDecoder(raw)
	for _, step := range path {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		d, _ := tok.(json.Delim)
		if step == "[0]" {
			if d != '[' || !dec.More() {
				return nil, false
			}
			continue
		}
		if d != '{' {
			return nil, false
		}
		for {
			if !dec.More() {
				return nil, false
			}
			tok, err := dec.Token()
			if err != nil {
				return nil, false
			}
			if key, _ := tok.(string); key == step {
				break
			}
			if err := skipValue(dec); err != nil {
				return nil, false
			}
		}
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, false
	}
	id, ok := tok.(string)
	return []byte(id), ok
}

// newDecoder tokenizes b. Numbers stay text: as float64, one out of its
// range (1E700, valid JSON) would be an error where the scanner skips it.
func newDecoder(b []byte) *json.Decoder {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec
}

// skipValue consumes one JSON value, however deeply nested.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
		}
		if depth == 0 {
			return nil
		}
	}
}

func spanOf(s *wire.Span, project string) index.Span {
	h := s.Header()
	return index.Span{
		TraceID:  h.TraceID,
		SpanID:   h.SpanID,
		ParentID: h.ParentSpanID,
		Project:  project,
		Name:     string(h.Name),
		Start:    pcommon.Timestamp(h.StartTimeUnixNano),
	}
}

// parentMap maps every span of a checked export to its parent.
func parentMap(body []byte) map[pcommon.SpanID]pcommon.SpanID {
	m := map[pcommon.SpanID]pcommon.SpanID{}
	wire.Walk(body, func(_ *wire.Resource, s *wire.Span) {
		h := s.Header()
		m[h.SpanID] = h.ParentSpanID
	})
	return m
}
