package index

import (
	"encoding/json"
	"errors"
	"io"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
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
	// well, for apps that record a correlation key of their own.
	ExtraKeys []string
	// MaxOutputValue bounds the size of an output.value that is parsed;
	// zero means DefaultMaxOutputValue.
	MaxOutputValue int
}

// Extract returns one entry per response id found in td. project is the
// project the export was sent to (the x-project-name header), empty if none;
// a resource's openinference.project.name is used when it is empty, as
// Phoenix does.
//
// When several spans of one trace carry the same id, only the innermost is
// returned: the annotation belongs on the LLM call, not on the handler span
// around it that copied the id.
func (x Extractor) Extract(td ptrace.Traces, project string) []Entry {
	var entries []Entry
	byID := map[string]int{} // response id -> position in entries
	var parents map[pcommon.SpanID]pcommon.SpanID

	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		proj := project
		if proj == "" {
			if v, ok := rs.Resource().Attributes().Get(AttrProjectName); ok && v.Type() == pcommon.ValueTypeStr && v.Str() != "" {
				proj = v.Str()
			} else {
				proj = DefaultProject
			}
		}
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				span := spans.At(k)
				x.eachID(span, func(id string) {
					e := Entry{ResponseID: id, Span: spanOf(span, proj)}
					pos, dup := byID[id]
					if !dup {
						byID[id] = len(entries)
						entries = append(entries, e)
						return
					}
					if parents == nil {
						parents = parentMap(td)
					}
					if innerThan(e.Span, entries[pos].Span, parents) {
						entries[pos] = e
					}
				})
			}
		}
	}
	return entries
}

// eachID calls fn for every distinct response id on span.
func (x Extractor) eachID(span ptrace.Span, fn func(string)) {
	attrs := span.Attributes()
	var seen [4]string
	n := 0
	emit := func(id string) {
		if id == "" || len(id) > MaxResponseIDLen {
			return
		}
		for _, s := range seen[:n] {
			if s == id {
				return
			}
		}
		if n < len(seen) {
			seen[n] = id
			n++
		}
		fn(id)
	}
	if v, ok := attrs.Get(AttrGenAIResponseID); ok && v.Type() == pcommon.ValueTypeStr {
		emit(v.Str())
	}
	if id, ok := x.openInferenceID(attrs); ok {
		emit(id)
	}
	for _, key := range x.ExtraKeys {
		if v, ok := attrs.Get(key); ok && v.Type() == pcommon.ValueTypeStr {
			emit(v.Str())
		}
	}
}

func (x Extractor) openInferenceID(attrs pcommon.Map) (string, bool) {
	kind, ok := attrs.Get(AttrOpenInferenceSpanKind)
	if !ok || kind.Type() != pcommon.ValueTypeStr || kind.Str() != "LLM" {
		return "", false
	}
	mime, ok := attrs.Get(AttrOutputMimeType)
	if !ok || mime.Type() != pcommon.ValueTypeStr || !strings.HasPrefix(mime.Str(), "application/json") {
		return "", false
	}
	out, ok := attrs.Get(AttrOutputValue)
	if !ok || out.Type() != pcommon.ValueTypeStr {
		return "", false
	}
	limit := x.MaxOutputValue
	if limit <= 0 {
		limit = DefaultMaxOutputValue
	}
	if len(out.Str()) > limit {
		return "", false
	}
	id, err := TopLevelID(out.Str())
	return id, err == nil && id != ""
}

var errNoObject = errors.New("not a JSON object")

// TopLevelID returns the string value of the top-level "id" key of the JSON
// object in s. It reads only as far as that key and skips nested values
// without decoding them, so the usual OpenAI answer (where "id" comes first)
// costs a few tokens whatever the size of the completion.
func TopLevelID(s string) (string, error) {
	if id, ok := leadingID(s); ok {
		return id, nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	tok, err := dec.Token()
	if err != nil {
		return "", err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return "", errNoObject
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", err
		}
		key, ok := tok.(string)
		if !ok {
			return "", errNoObject
		}
		if key == "id" {
			tok, err := dec.Token()
			if err != nil {
				return "", err
			}
			id, _ := tok.(string) // an "id" that is not a string is no response id
			return id, nil
		}
		if err := skipValue(dec); err != nil {
			return "", err
		}
	}
	return "", io.EOF
}

// leadingID is TopLevelID's fast path for the shape OpenAI sends and the
// instrumentations record for a non-streamed answer: compact JSON that
// opens with {"id":"<id>", where the id needs no unescaping. It reads a few
// dozen bytes and allocates nothing; anything else goes to the decoder.
func leadingID(s string) (string, bool) {
	const prefix = `{"id":"`
	rest, ok := strings.CutPrefix(strings.TrimLeft(s, " \t\r\n"), prefix)
	if !ok {
		return "", false
	}
	end := strings.IndexAny(rest, `"\`)
	if end < 0 || rest[end] != '"' {
		return "", false // unterminated, or an escape: let the decoder judge
	}
	// The value must be followed by the next member or the end of the
	// object, as the decoder would insist.
	after := strings.TrimLeft(rest[end+1:], " \t\r\n")
	if after == "" || (after[0] != ',' && after[0] != '}') {
		return "", false
	}
	for i := 0; i < end; i++ {
		// Response ids are printable ASCII. Control characters are not
		// allowed in JSON strings, and the decoder would turn invalid
		// UTF-8 into U+FFFD: both are the decoder's to judge.
		if c := rest[i]; c < 0x20 || c >= 0x80 {
			return "", false
		}
	}
	return rest[:end], true
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

func spanOf(span ptrace.Span, project string) Span {
	return Span{
		TraceID:  span.TraceID(),
		SpanID:   span.SpanID(),
		ParentID: span.ParentSpanID(),
		Project:  project,
		Name:     span.Name(),
		Start:    span.StartTimestamp(),
	}
}

func parentMap(td ptrace.Traces) map[pcommon.SpanID]pcommon.SpanID {
	m := map[pcommon.SpanID]pcommon.SpanID{}
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				s := spans.At(k)
				m[s.SpanID()] = s.ParentSpanID()
			}
		}
	}
	return m
}

// innerThan reports whether a should replace b as the span of a response id
// both carry. Within one trace, a descendant wins over its ancestor; when the
// ancestry is not known, the span that started later is taken to be the inner
// one (a child starts after its parent). A span of another trace replaces b:
// it is the newer use of the id.
func innerThan(a, b Span, parents map[pcommon.SpanID]pcommon.SpanID) bool {
	if a.SpanID == b.SpanID {
		return false
	}
	if a.TraceID != b.TraceID {
		return true
	}
	if isAncestor(b.SpanID, a, parents) {
		return true
	}
	if isAncestor(a.SpanID, b, parents) {
		return false
	}
	return a.Start > b.Start
}

// isAncestor reports whether anc is an ancestor of s, following parent links
// through parents (which may be nil: then only s's own parent is known).
func isAncestor(anc pcommon.SpanID, s Span, parents map[pcommon.SpanID]pcommon.SpanID) bool {
	p := s.ParentID
	for range 64 { // bounded: a malformed export may contain a cycle
		if p.IsEmpty() {
			return false
		}
		if p == anc {
			return true
		}
		next, ok := parents[p]
		if !ok {
			return false
		}
		p = next
	}
	return false
}
