package extract

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzTopLevelID feeds arbitrary output.value strings to the extractor's
// JSON reader: it must never panic, and whatever id it returns must be the
// one a full decode finds when the object has a single "id" key.
func FuzzTopLevelID(f *testing.F) {
	for _, s := range []string{
		`{"id":"chatcmpl-1","object":"chat.completion"}`,
		`{"choices": [{"delta": {"content": "x"}}], "id": "chatcmpl-2"}`,
		`{"object":"response","output":[{"id":"msg_1","content":[{"text":"{\"id\":1}"}]}],"id":"resp_1"}`,
		`{"id":`, `[]`, `{"a":{"b":[1,2,{"c":null}]}}`, `{"id":null}`, "\xff",
		`{"generations":[[{"message":{"kwargs":{"response_metadata":{"id":"chatcmpl-3"}}}}]]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := TopLevelID(s)
		if err != nil || id == "" {
			return
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal([]byte(s), &obj) != nil || strings.Count(s, `"id"`) != 1 {
			return // a prefix of an invalid document, or duplicate keys: nothing to compare
		}
		var want string
		if json.Unmarshal(obj["id"], &want) == nil && want != id {
			t.Errorf("TopLevelID(%q) = %q, full decode says %q", s, id, want)
		}
	})
}

// FuzzScanID holds the fast path to the decoder: on valid JSON, whatever
// scanID answers, the decoder answers too.
func FuzzScanID(f *testing.F) {
	for _, s := range []string{
		`{"id":"chatcmpl-1","object":"chat.completion"}`,
		`{"choices": [{"message": {"content": "x \"quoted\" \\ y", "role": "assistant"}}], "id": "chatcmpl-2", "model": "m"}`,
		`{"a":[1,-2.5e3,true,null,{"b":"}]"}],"id":"x"}`,
		`{"a\"b":1,"id":"y"}`, `{"id":"\u0041"}`, `{"id":1}`, `{"a":{"id":"inner"}}`, ` { "id" : "z" } `,
		`{"generations": [[{"text": "}", "message": {"id": ["a"], "kwargs": {"response_metadata": {"id": "chatcmpl-4"}}}}]], "id": "x"}`,
		`{"generations":[[{"message":{"kwargs":{"response_metadata":{"id":null}}}}]],"id":"y"}`,
		`{"generations":[[]],"llm_output":{"id":"z"}}`, `{"generations":[[{"message":{"kwargs":[]}}]]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := scanID([]byte(s))
		if !ok || !json.Valid([]byte(s)) {
			return
		}
		want, err := decodeID([]byte(s))
		if err != nil || string(want) != string(id) {
			t.Errorf("scanID(%q) = %q; the decoder says %q, %v", s, id, want, err)
		}
	})
}
