package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// summaryKeys are the attributes shown with their values, in this order:
// where instrumentations put the response id, and what identifies an LLM or
// HTTP client span. Keys starting with "llm." are shown too.
var summaryKeys = []string{
	"openinference.span.kind",
	"gen_ai.operation.name",
	"gen_ai.system",
	"gen_ai.provider.name",
	"gen_ai.request.model",
	"gen_ai.response.model",
	"gen_ai.response.id",
	"output.mime_type",
	"output.value",
	"http.request.method",
	"http.method",
	"url.full",
	"http.url",
	"http.response.status_code",
	"http.status_code",
}

const (
	outputValueChars = 200
	otherValueChars  = 80
)

type spanInfo struct {
	span     ptrace.Span
	scope    pcommon.InstrumentationScope
	children []*spanInfo
	// idKey is the attribute that holds the response id, "" when none does.
	idKey string
}

// capture is what one app run produced.
type capture struct {
	cell
	File string
	App  appResult
	// IssuedID is the id llmserver issued: the app's, unless the app had
	// none to print (appHasNoID).
	IssuedID string
	Exports  []export
	Resource map[string]string
	spans    []*spanInfo
	// roots are the spans whose parent is not in the capture, by start time;
	// the others hang below them in spanInfo.children.
	roots []*spanInfo
}

// decode parses every export of c. Concatenated protobuf messages of one type
// merge into one, so decoding the file written by writeCapture gives the same
// spans.
func (c *capture) decode() error {
	c.Resource = map[string]string{}
	for i, e := range c.Exports {
		if e.ContentEncoding != "" && e.ContentEncoding != "identity" {
			return fmt.Errorf("export %d: content-encoding %q: the capture expects uncompressed bodies", i, e.ContentEncoding)
		}
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(e.Body); err != nil {
			return fmt.Errorf("export %d: %w", i, err)
		}
		rss := req.Traces().ResourceSpans()
		for i := range rss.Len() {
			rs := rss.At(i)
			for k, v := range rs.Resource().Attributes().All() {
				c.Resource[k] = v.AsString()
			}
			for j := range rs.ScopeSpans().Len() {
				ss := rs.ScopeSpans().At(j)
				for k := range ss.Spans().Len() {
					si := &spanInfo{span: ss.Spans().At(k), scope: ss.Scope()}
					si.idKey = findResponseID(si.span.Attributes(), c.IssuedID)
					c.spans = append(c.spans, si)
				}
			}
		}
	}
	c.roots = c.link()
	return nil
}

// findResponseID returns the attribute that carries id, naming where in
// output.value the id sits when it is in the JSON there: the top-level key
// ("id" for OpenAI and Anthropic, "response_id" or "responseId" for Google),
// else every path to it (LangChain's LLMResult nests it).
func findResponseID(attrs pcommon.Map, id string) string {
	if id == "" {
		return ""
	}
	var keys []string
	for k, v := range attrs.All() {
		if !strings.Contains(v.AsString(), id) {
			continue
		}
		if k == "output.value" {
			k = "output.value (not in its JSON)"
			var doc any
			if json.Unmarshal([]byte(v.Str()), &doc) == nil {
				top, _ := doc.(map[string]any)
				paths := jsonPaths(doc, id, "")
				for _, name := range []string{"id", "response_id", "responseId"} {
					if s, ok := top[name].(string); ok && s == id {
						paths = []string{fmt.Sprintf("top-level %q", name)}
						break
					}
				}
				if len(paths) > 0 {
					k = "output.value (" + strings.Join(paths, ", ") + " of the JSON)"
				}
			}
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, ", ")
}

// jsonPaths returns the paths (a.b[0].c) under prefix at which the decoded
// JSON value v holds the string id, in key order.
func jsonPaths(v any, id, prefix string) []string {
	switch v := v.(type) {
	case string:
		if v == id {
			return []string{prefix}
		}
	case []any:
		var out []string
		for i, e := range v {
			out = append(out, jsonPaths(e, id, fmt.Sprintf("%s[%d]", prefix, i))...)
		}
		return out
	case map[string]any:
		var out []string
		for _, k := range slices.Sorted(maps.Keys(v)) {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			out = append(out, jsonPaths(v[k], id, p)...)
		}
		return out
	}
	return nil
}

// link sets the children of every span and returns the roots.
func (c *capture) link() []*spanInfo {
	byID := map[pcommon.SpanID]*spanInfo{}
	for _, s := range c.spans {
		s.children = nil
		byID[s.span.SpanID()] = s
	}
	var roots []*spanInfo
	for _, s := range c.spans {
		if p, ok := byID[s.span.ParentSpanID()]; ok && !s.span.ParentSpanID().IsEmpty() {
			p.children = append(p.children, s)
		} else {
			roots = append(roots, s)
		}
	}
	byStart := func(a, b *spanInfo) int { return cmp.Compare(a.span.StartTimestamp(), b.span.StartTimestamp()) }
	for _, s := range c.spans {
		slices.SortFunc(s.children, byStart)
	}
	slices.SortFunc(roots, byStart)
	return roots
}

// llmSpan is the span marked as an LLM call that holds the response id,
// else any span with the id (LangChain's chain spans hold it too), else the
// first marked as an LLM call.
func (c *capture) llmSpan() *spanInfo {
	for _, s := range c.spans {
		if s.idKey != "" && isLLM(s) {
			return s
		}
	}
	for _, s := range c.spans {
		if s.idKey != "" {
			return s
		}
	}
	for _, s := range c.spans {
		if isLLM(s) {
			return s
		}
	}
	return nil
}

// isLLM reports whether an instrumentation marked s as an LLM call.
func isLLM(s *spanInfo) bool {
	a := s.span.Attributes()
	if v, ok := a.Get("openinference.span.kind"); ok && v.Str() == "LLM" {
		return true
	}
	_, ok := a.Get("gen_ai.operation.name")
	return ok
}

// matrixRow is one line of the README's table.
func (c *capture) matrixRow() string {
	llm := c.llmSpan()
	if llm == nil {
		var names []string
		for _, s := range c.spans {
			names = append(names, fmt.Sprintf("`%s` %s", s.span.Name(), s.span.Kind()))
		}
		return fmt.Sprintf("| %s | %s | %s | none (spans: %s) | no | - |", c.Provider, c.Instrumentation, c.Call, strings.Join(names, ", "))
	}
	where := llm.idKey
	if where == "" {
		where = "no"
	}
	child := "no"
	for _, ch := range llm.children {
		if ch.span.Kind() == ptrace.SpanKindClient {
			child = fmt.Sprintf("yes (`%s`)", ch.span.Name())
		}
	}
	parent := ""
	for _, s := range c.spans {
		if s.span.SpanID() == llm.span.ParentSpanID() {
			parent = ", child of `" + s.span.Name() + "`"
		}
	}
	return fmt.Sprintf("| %s | %s | %s | `%s` %s%s | %s | %s |", c.Provider, c.Instrumentation, c.Call,
		llm.span.Name(), llm.span.Kind(), parent, where, child)
}

// describe writes the span tree of c with the attributes that matter here.
func (c *capture) describe(b *strings.Builder) {
	fmt.Fprintf(b, "### %s\n\n", c.File)
	size := 0
	for _, e := range c.Exports {
		size += len(e.Body)
	}
	fmt.Fprintf(b, "%d export request(s), %d bytes. The app printed response_id `%s`, trace_id `%s`.\n",
		len(c.Exports), size, c.App.ResponseID, c.App.TraceID)
	if c.IssuedID != c.App.ResponseID {
		fmt.Fprintf(b, "The server issued response id `%s`, which the app was not given; the spans are searched for that one.\n", c.IssuedID)
	}
	types := map[string]bool{}
	for _, e := range c.Exports {
		types[e.ContentType] = true
	}
	fmt.Fprintf(b, "Content-Type: %s. Resource: service.name=%q", strings.Join(slices.Sorted(maps.Keys(types)), ", "), c.Resource["service.name"])
	if p, ok := c.Resource["openinference.project.name"]; ok {
		fmt.Fprintf(b, ", openinference.project.name=%q", p)
	}
	b.WriteString("\n\n```\n")
	for _, r := range c.roots {
		describeSpan(b, r, 0, c.App.TraceID)
	}
	b.WriteString("```\n\n")
}

func describeSpan(b *strings.Builder, s *spanInfo, depth int, traceID string) {
	indent := strings.Repeat("    ", depth)
	sp := s.span
	scope := s.scope.Name()
	if v := s.scope.Version(); v != "" {
		scope += " " + v
	}
	fmt.Fprintf(b, "%s%s  kind=%s  scope=%s  span_id=%s\n", indent, sp.Name(), sp.Kind(), scope, sp.SpanID())
	if tid := sp.TraceID().String(); tid != traceID {
		fmt.Fprintf(b, "%s  ! trace_id %s differs from the app's\n", indent, tid)
	}
	attrs := sp.Attributes()
	var llmKeys, others []string
	for k := range attrs.All() {
		switch {
		case slices.Contains(summaryKeys, k):
		case strings.HasPrefix(k, "llm."):
			llmKeys = append(llmKeys, k)
		default:
			others = append(others, k)
		}
	}
	slices.Sort(llmKeys)
	slices.Sort(others)
	show := func(k string, limit int) {
		if v, ok := attrs.Get(k); ok {
			fmt.Fprintf(b, "%s  %s = %s\n", indent, k, clip(v, limit))
		}
	}
	for _, k := range summaryKeys {
		limit := otherValueChars
		if k == "output.value" {
			limit = outputValueChars
		}
		show(k, limit)
	}
	for _, k := range llmKeys {
		show(k, otherValueChars)
	}
	if len(others) > 0 {
		fmt.Fprintf(b, "%s  other keys: %s\n", indent, strings.Join(others, ", "))
	}
	if s.idKey != "" {
		fmt.Fprintf(b, "%s  => response id in %s\n", indent, s.idKey)
	}
	for _, ch := range s.children {
		describeSpan(b, ch, depth+1, traceID)
	}
}

// clip renders v as JSON-quoted text cut after limit characters.
func clip(v pcommon.Value, limit int) string {
	text := v.AsString()
	cut := ""
	if r := []rune(text); len(r) > limit {
		text, cut = string(r[:limit]), fmt.Sprintf(" ...(%d chars)", len(r))
	}
	if v.Type() == pcommon.ValueTypeStr {
		q, _ := json.Marshal(text)
		return string(q) + cut
	}
	return text + cut
}
