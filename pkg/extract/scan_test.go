package extract

import (
	"fmt"
	"strings"
	"testing"
)

// streamedOutput is output.value as OpenInference records a streamed chat
// completion (json.dumps: spaces after separators), where "id" comes after
// the whole answer.
func streamedOutput(id string, size int) string {
	answer := strings.Repeat(`Bouvet Island lies in the \"South Atlantic\" Ocean. `, size/52+1)[:size]
	return fmt.Sprintf(`{"choices": [{"message": {"content": "%s", "role": "assistant"}, "index": 0, "finish_reason": "stop"}], `+
		`"id": "%s", "created": 1767225600, "model": "gpt-4o-mini", "object": "chat.completion"}`, answer, id)
}

// BenchmarkTopLevelID is the JSON scan alone, by the fast path (scan, what
// the extractor uses) and by encoding/json's tokenizer (decode, what it
// used before and still falls back to), in one run to compare.
func BenchmarkTopLevelID(b *testing.B) {
	const id = "chatcmpl-B9MHDbslfQmhd8j9bXb8ZzWHNpEYp"
	compact := func(size int) string {
		head := `{"id":"` + id + `","choices":[{"index":0,"message":{"role":"assistant","content":"`
		tail := `"},"finish_reason":"stop"}],"object":"chat.completion"}`
		return head + strings.Repeat("x", size-len(head)-len(tail)) + tail
	}
	for _, c := range []struct {
		name string
		s    string
	}{
		{"2KB", compact(2 << 10)},
		{"50KB", compact(50 << 10)},
		{"streamed-2KB", streamedOutput(id, 2<<10)},
		{"streamed-50KB", streamedOutput(id, 50<<10)},
	} {
		for _, way := range []struct {
			name string
			fn   func([]byte) ([]byte, error)
		}{{"scan", topLevelID}, {"decode", decodeID}} {
			b.Run(c.name+"/"+way.name, func(b *testing.B) {
				in := []byte(c.s)
				if got, err := way.fn(in); err != nil || string(got) != id {
					b.Fatalf("%s = %q, %v", way.name, got, err)
				}
				b.SetBytes(int64(len(in)))
				b.ReportAllocs()
				for b.Loop() {
					_, _ = way.fn(in)
				}
			})
		}
	}
}

func TestScanIDShapes(t *testing.T) {
	const id = "chatcmpl-1"
	for _, s := range []string{streamedOutput(id, 100), streamedOutput(id, 5000), langChainResult(id)} {
		if got, ok := scanID([]byte(s)); !ok || string(got) != id {
			t.Errorf("scanID(%.60q...) = %q, %v; want %q by the fast path", s, got, ok, id)
		}
	}
	// Left to the decoder: escapes in the key or the id, a non-string id,
	// no id, and nesting beyond the scanner's stack.
	for _, s := range []string{`{"i\u0064":"x"}`, `{"id":"a\"b"}`, `{"id":1}`, `{"a":1}`,
		`{"a":` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `,"id":"x"}`,
		`{"generations":[[{"message":{"kwargs":{"response_metadata":{"i\u0064":"x"}}}}]]}`,
		`{"generations":[[{"message":{"kwargs":{"response_metadata":{"id":"a\"b"}}}}]]}`,
		`{"generations":[[{"message":{"kw":` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `}}]]}`} {
		if got, ok := scanID([]byte(s)); ok {
			t.Errorf("scanID(%q) = %q; want it left to the decoder", s, got)
		}
	}
}
