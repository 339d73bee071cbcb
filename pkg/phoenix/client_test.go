// Recorded tests: they replay interactions with a real Phoenix (arize-phoenix 20.26.1) from
// testdata/cassettes/*.yaml and run offline. To record them again, against a fresh Phoenix:
//
//	scripts/record-phoenix-cassettes.sh
//
// which starts a throwaway Phoenix with scripts/phoenix.sh and runs, in effect,
//
//	PHOENIX_RECORD=1 PHOENIX_URL=http://127.0.0.1:6006 go test ./pkg/phoenix/ -run 'TestVCR'
//
// In record mode the tests first export the seed trace of vcr_test.go to PHOENIX_URL/v1/traces
// and wait for its spans. Assertions on ids compare them with each other, never with literal row
// numbers, so a recording from any fresh Phoenix passes. See testdata/README.md.
package phoenix

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

func feedback(spanID, label string, score float64, identifier string) SpanAnnotation {
	return SpanAnnotation{
		SpanID:        spanID,
		Name:          "user feedback",
		AnnotatorKind: AnnotatorHuman,
		Result:        Result{Label: ptr(label), Score: ptr(score)},
		Identifier:    identifier,
	}
}

// labels maps annotation identifier to label, for the annotations named name.
func labels(anns []StoredSpanAnnotation, name string) map[string]string {
	out := map[string]string{}
	for _, a := range anns {
		if a.Name == name && a.Result.Label != nil {
			out[a.Identifier] = *a.Result.Label
		}
	}
	return out
}

func TestVCRAnnotateSpanExisting(t *testing.T) {
	c := newVCRClient(t, "annotate_existing_span")
	ids, err := c.AnnotateSpans(context.Background(), []SpanAnnotation{{
		SpanID:        spanAnnotate,
		Name:          "user feedback",
		AnnotatorKind: AnnotatorHuman,
		Result:        Result{Label: ptr("thumbs-up"), Score: ptr(1.0), Explanation: ptr("helpful")},
		Metadata:      map[string]any{"source": "vcr"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 {
		t.Fatalf("ids = %q, want one", ids)
	}
	// Pinned: ids are relay global ids, base64("SpanAnnotation:<row>"), not integers.
	if typ, _ := globalID(t, ids[0]); typ != "SpanAnnotation" {
		t.Errorf("id %q has type %q, want SpanAnnotation", ids[0], typ)
	}
}

func TestVCRAnnotateSpanUnknown(t *testing.T) {
	c := newVCRClient(t, "annotate_unknown_span")
	ids, err := c.AnnotateSpans(context.Background(), []SpanAnnotation{feedback(unknownSpanID, "thumbs-up", 1, "")})
	if err == nil {
		t.Fatalf("ids = %q, want a 404", ids)
	}
	if !IsSpanNotFound(err) || IsRetryable(err) {
		t.Errorf("IsSpanNotFound = %v, IsRetryable = %v for %v; want true, false", IsSpanNotFound(err), IsRetryable(err), err)
	}
	apiErr := err.(*APIError)
	if want := "Spans with IDs " + unknownSpanID + " do not exist."; apiErr.Message != want {
		t.Errorf("Message = %q, want %q", apiErr.Message, want)
	}
	if want := "phoenix: POST /v1/span_annotations: 404 Not Found: Spans with IDs " + unknownSpanID + " do not exist."; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

// One unknown span rejects the whole batch: the known span gets nothing.
func TestVCRAnnotateSpansBatchWithUnknownSpan(t *testing.T) {
	c := newVCRClient(t, "annotate_batch_with_unknown_span")
	ctx := context.Background()
	_, err := c.AnnotateSpans(ctx, []SpanAnnotation{
		feedback(spanBatch, "thumbs-up", 1, ""),
		feedback(unknownSpanID, "thumbs-up", 1, ""),
	})
	if !IsSpanNotFound(err) {
		t.Fatalf("err = %v, want a 404", err)
	}
	got, err := c.SpanAnnotations(ctx, vcrProject, []string{spanBatch})
	if err != nil {
		t.Fatal(err)
	}
	// Pinned: a known span without annotations is 200 and an empty list, not a 404.
	if len(got) != 0 {
		t.Errorf("span %s has annotations %+v, want none", spanBatch, got)
	}
}

func TestVCRAnnotateSpanUpsert(t *testing.T) {
	c := newVCRClient(t, "annotate_upsert_same_key")
	ctx := context.Background()
	first, err := c.AnnotateSpans(ctx, []SpanAnnotation{feedback(spanUpsert, "thumbs-up", 1, "")})
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.AnnotateSpans(ctx, []SpanAnnotation{feedback(spanUpsert, "thumbs-down", 0, "")})
	if err != nil {
		t.Fatal(err)
	}
	// Pinned: an upsert on the same (name, span, identifier) answers the id of the existing row.
	if first[0] != second[0] {
		t.Errorf("second vote got id %q, first %q: want the same", second[0], first[0])
	}
	stored, err := c.SpanAnnotations(ctx, vcrProject, []string{spanUpsert})
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0].ID != first[0] {
		t.Fatalf("stored = %+v, want one annotation with id %q", stored, first[0])
	}
	if got := stored[0].Result; *got.Label != "thumbs-down" || *got.Score != 0 {
		t.Errorf("stored result = %q/%v, want the later vote thumbs-down/0", *got.Label, *got.Score)
	}
}

func TestVCRAnnotateSpanIdentifiers(t *testing.T) {
	c := newVCRClient(t, "annotate_two_identifiers")
	ctx := context.Background()
	ids, err := c.AnnotateSpans(ctx, []SpanAnnotation{
		feedback(spanIdentifiers, "thumbs-up", 1, "user-1"),
		feedback(spanIdentifiers, "thumbs-down", 0, "user-2"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || ids[0] == ids[1] {
		t.Fatalf("ids = %q, want two different ids", ids)
	}
	again, err := c.AnnotateSpans(ctx, []SpanAnnotation{feedback(spanIdentifiers, "thumbs-down", 0, "user-1")})
	if err != nil {
		t.Fatal(err)
	}
	if again[0] != ids[0] {
		t.Errorf("user-1 voting again got id %q, want %q", again[0], ids[0])
	}
	stored, err := c.SpanAnnotations(ctx, vcrProject, []string{spanIdentifiers})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"user-1": "thumbs-down", "user-2": "thumbs-down"}
	if got := labels(stored, "user feedback"); !maps.Equal(got, want) {
		t.Errorf("labels by identifier = %v, want %v", got, want)
	}
}

func TestVCRAnnotateSpanReservedName(t *testing.T) {
	c := newVCRClient(t, "annotate_reserved_name_note")
	a := feedback(spanAnnotate, "thumbs-up", 1, "")
	a.Name = "note"
	_, err := c.AnnotateSpans(context.Background(), []SpanAnnotation{a})
	apiErr, ok := err.(*APIError)
	if !ok || apiErr.StatusCode != 400 {
		t.Fatalf("err = %v, want a 400", err)
	}
	if IsRetryable(err) || IsSpanNotFound(err) {
		t.Errorf("a 400 must be permanent and not span-not-found: %v", err)
	}
	if want := "The name 'note' is reserved for trace and span notes. Use POST /v1/span_notes instead."; apiErr.Message != want {
		t.Errorf("Message = %q, want %q", apiErr.Message, want)
	}
}

func TestVCRAnnotateTraces(t *testing.T) {
	c := newVCRClient(t, "annotate_traces")
	ctx := context.Background()
	ids, err := c.AnnotateTraces(ctx, []TraceAnnotation{{
		TraceID:       seedTraceID,
		Name:          "user feedback",
		AnnotatorKind: AnnotatorHuman,
		Result:        Result{Label: ptr("thumbs-up"), Score: ptr(1.0)},
		Identifier:    "session-7",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 {
		t.Fatalf("ids = %q, want one", ids)
	}
	if typ, _ := globalID(t, ids[0]); typ != "TraceAnnotation" {
		t.Errorf("id %q has type %q, want TraceAnnotation", ids[0], typ)
	}

	_, err = c.AnnotateTraces(ctx, []TraceAnnotation{{TraceID: unknownTraceID, Name: "user feedback", AnnotatorKind: AnnotatorHuman}})
	if !IsSpanNotFound(err) {
		t.Fatalf("unknown trace: err = %v, want a 404", err)
	}
	if want := "Traces with IDs " + unknownTraceID + " do not exist."; err.(*APIError).Message != want {
		t.Errorf("Message = %q, want %q", err.(*APIError).Message, want)
	}

	_, err = c.AnnotateTraces(ctx, []TraceAnnotation{{TraceID: seedTraceID, Name: "note", AnnotatorKind: AnnotatorHuman}})
	if apiErr, ok := err.(*APIError); !ok || apiErr.StatusCode != 400 ||
		apiErr.Message != "The name 'note' is reserved for trace and span notes. Use POST /v1/trace_notes instead." {
		t.Errorf("note: err = %v, want Phoenix's 400", err)
	}
}

func TestVCRSpans(t *testing.T) {
	c := newVCRClient(t, "spans_query")
	ctx := context.Background()

	get := func(q SpanQuery) Span {
		t.Helper()
		spans, err := c.Spans(ctx, vcrProject, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(spans) != 1 {
			t.Fatalf("%+v: got %d spans, want 1", q, len(spans))
		}
		return spans[0]
	}

	genAI := get(SpanQuery{SpanID: spanGenAI})
	if genAI.Name != "chat gpt-4o-mini" || genAI.Context != (SpanContext{TraceID: seedTraceID, SpanID: spanGenAI}) || genAI.ParentID != spanRoot {
		t.Errorf("GenAI span = %+v", genAI)
	}
	// Pinned: Phoenix turns a GenAI chat span into an LLM span, and derives OpenInference
	// attributes from gen_ai.*, among them output.value holding the response id.
	if genAI.SpanKind != "LLM" {
		t.Errorf("GenAI span kind = %q, want LLM", genAI.SpanKind)
	}
	wantAttrs := map[string]any{
		"gen_ai.response.id":        genAIResponseID,
		"gen_ai.usage.input_tokens": float64(12),
		"llm.model_name":            "gpt-4o-mini",
		"output.mime_type":          "application/json",
		"output.value":              `{"id": "` + genAIResponseID + `"}`,
	}
	for k, want := range wantAttrs {
		if got := genAI.Attributes[k]; got != want {
			t.Errorf("GenAI attribute %s = %#v, want %#v", k, got, want)
		}
	}

	// Pinned: openinference.span.kind becomes span_kind and leaves the attributes.
	oi := get(SpanQuery{SpanID: spanOpenInfer})
	if _, ok := oi.Attributes["openinference.span.kind"]; oi.SpanKind != "LLM" || ok {
		t.Errorf("OpenInference span kind = %q, attributes %v", oi.SpanKind, slices.Sorted(maps.Keys(oi.Attributes)))
	}

	root := get(SpanQuery{TraceID: seedTraceID, Name: "POST /chat", Limit: 5})
	if root.ParentID != "" || root.SpanKind != "UNKNOWN" || root.Context.SpanID != spanRoot {
		t.Errorf("root span = %+v, want no parent and kind UNKNOWN", root)
	}

	none, err := c.Spans(ctx, vcrProject, SpanQuery{SpanID: unknownSpanID})
	if err != nil || len(none) != 0 {
		t.Errorf("unknown span: %+v, %v; want no spans and no error", none, err)
	}

	_, err = c.Spans(ctx, "no-such-project", SpanQuery{SpanID: spanRoot})
	if apiErr, ok := err.(*APIError); !ok || apiErr.StatusCode != 404 || apiErr.Message != "Project with name no-such-project not found" {
		t.Errorf("unknown project: err = %v, want Phoenix's 404", err)
	}
}

func TestVCRSpanAnnotationsReadBack(t *testing.T) {
	c := newVCRClient(t, "span_annotations_read_back")
	ctx := context.Background()
	sent := SpanAnnotation{
		SpanID:        spanReadBack,
		Name:          "user feedback",
		AnnotatorKind: AnnotatorHuman,
		Result:        Result{Label: ptr("thumbs-up"), Score: ptr(1.0), Explanation: ptr("spot on")},
		Metadata:      map[string]any{"response_id": genAIResponseID, "turn": float64(3)},
		Identifier:    "user-42",
	}
	ids, err := c.AnnotateSpans(ctx, []SpanAnnotation{sent, {
		SpanID: spanReadBack, Name: "correctness", AnnotatorKind: AnnotatorLLM, Result: Result{Score: ptr(0.5)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.SpanAnnotations(ctx, vcrProject, []string{spanReadBack, spanReadBack})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d annotations, want 2: %+v", len(got), got)
	}
	// Pinned: newest first.
	llm, human := got[0], got[1]
	if human.ID != ids[0] || human.SpanID != spanReadBack || human.Name != sent.Name ||
		human.AnnotatorKind != AnnotatorHuman || human.Identifier != "user-42" ||
		*human.Result.Label != "thumbs-up" || *human.Result.Score != 1 || *human.Result.Explanation != "spot on" ||
		!maps.Equal(human.Metadata, sent.Metadata) {
		t.Errorf("human annotation = %+v, want what was sent with id %q", human, ids[0])
	}
	// Pinned: absent label and explanation come back as null, the metadata as {}.
	if llm.ID != ids[1] || llm.Result.Label != nil || llm.Result.Explanation != nil || *llm.Result.Score != 0.5 ||
		llm.Metadata == nil || len(llm.Metadata) != 0 || llm.Identifier != "" {
		t.Errorf("LLM annotation = %+v", llm)
	}
}

func TestVCRSpanAnnotationsUnknownSpan(t *testing.T) {
	c := newVCRClient(t, "span_annotations_unknown_span")
	ctx := context.Background()
	_, err := c.SpanAnnotations(ctx, vcrProject, []string{unknownSpanID})
	if !IsSpanNotFound(err) || IsRetryable(err) {
		t.Fatalf("err = %v, want a permanent 404", err)
	}
	if want := "None of the supplied span_ids exist in this project"; err.(*APIError).Message != want {
		t.Errorf("Message = %q, want %q", err.(*APIError).Message, want)
	}
	// A project that has no span yet does not exist yet either: also a 404.
	_, err = c.SpanAnnotations(ctx, "no-such-project", []string{spanRoot})
	if !IsSpanNotFound(err) || err.(*APIError).Message != "Project with name no-such-project not found" {
		t.Errorf("unknown project: err = %v, want Phoenix's 404", err)
	}
}

func TestVCRProjects(t *testing.T) {
	c := newVCRClient(t, "projects")
	names, err := c.Projects(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// A fresh Phoenix holds "default" and the project the seed created.
	if !slices.Contains(names, vcrProject) || !slices.Contains(names, "default") {
		t.Errorf("projects = %q, want %q and default among them", names, vcrProject)
	}
}

func TestVCRSpansByResponseID(t *testing.T) {
	c := newVCRClient(t, "spans_by_response_id")
	ctx := context.Background()
	seedStart := func(i int) time.Time {
		return time.Unix(seedStartUnixSec, 0).Add(time.Duration(i) * time.Millisecond)
	}
	index := map[string]int{}
	for i, s := range seedSpans {
		index[s.id] = i
	}

	tests := []struct {
		name, responseID string
		wantSpanID       string // "": no span
		wantName         string
	}{
		{"GenAI attribute", genAIResponseID, spanGenAI, "chat gpt-4o-mini"},
		{"OpenInference chat completion", openInferRespID, spanOpenInfer, "ChatCompletion"},
		{"OpenInference streamed, id last", streamedRespID, spanStreamed, "ChatCompletion"},
		{"OpenInference responses API", responsesRespID, spanResponses, "Response"},
		{"Anthropic message", anthropicRespID, spanAnthropic, "anthropic.messages.create"},
		{"Google GenAI response_id", googleRespID, spanGoogle, "GenerateContent"},
		// The decoy's output.value holds this id only nested: Phoenix's substring match finds
		// the span, the client-side check drops it.
		{"nested id is not the response id", nestedOnlyID, "", ""},
		{"unknown id", "chatcmpl-nosuchid", "", ""},
		// Phoenix sees this prefix of streamedRespID quoted nowhere: the quotes in the filter
		// keep prefixes from matching.
		{"prefix of an id", "chatcmpl-vcr000", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spans, err := c.SpansByResponseID(ctx, vcrProject, tt.responseID)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantSpanID == "" {
				if len(spans) != 0 {
					t.Fatalf("spans = %+v, want none", spans)
				}
				return
			}
			if len(spans) != 1 {
				t.Fatalf("got %d spans, want 1: %+v", len(spans), spans)
			}
			s := spans[0]
			want := SpanContext{TraceID: seedTraceID, SpanID: tt.wantSpanID}
			if s.Context != want || s.ParentID != spanRoot || s.Name != tt.wantName || s.SpanKind != "LLM" {
				t.Errorf("span = %+v, want %+v, parent %s, name %q, kind LLM", s, want, spanRoot, tt.wantName)
			}
			if wantStart := seedStart(index[tt.wantSpanID]); !s.StartTime.Equal(wantStart) {
				t.Errorf("StartTime = %v, want %v", s.StartTime, wantStart)
			}
		})
	}

	_, err := c.SpansByResponseID(ctx, "no-such-project", genAIResponseID)
	if !IsSpanNotFound(err) || err.(*APIError).Message != "Project with name no-such-project not found" {
		t.Errorf("unknown project: err = %v, want Phoenix's 404", err)
	}
}

// Pinned: the attribute filter is an exact, case-sensitive match on the whole value, and a
// JSON-quoted value is compared as a string.
func TestVCRSpansAttributeFilter(t *testing.T) {
	c := newVCRClient(t, "spans_attribute_filter")
	ctx := context.Background()
	count := func(key, value string) int {
		t.Helper()
		spans, err := c.Spans(ctx, vcrProject, SpanQuery{Attribute: AttributeFilter{Key: key, Value: value}, Limit: 20})
		if err != nil {
			t.Fatalf("%s:%s: %v", key, value, err)
		}
		return len(spans)
	}
	checks := []struct {
		key, value string
		want       int
	}{
		{"gen_ai.response.id", genAIResponseID, 1},
		{"gen_ai.response.id", strings.ToUpper(genAIResponseID), 0},
		{"gen_ai.response.id", "chatcmpl-vcr", 0},
		{"gen_ai.response.id", "null", 0},
		// Not a JSON id match: output.value is compared whole.
		{"output.value", openInferRespID, 0},
		{"llm.system", "anthropic", 1},
	}
	for _, ch := range checks {
		if got := count(ch.key, ch.value); got != ch.want {
			t.Errorf("attribute %s:%q matched %d spans, want %d", ch.key, ch.value, got, ch.want)
		}
	}
}
