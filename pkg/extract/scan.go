package extract

import "bytes"

// scanID is TopLevelID's fast path: it walks the top-level object of a JSON
// document, skipping each value by its quotes and brackets without decoding
// it, up to the key "id" (or "response_id"), or a LangChain id at
// langChainIDPath, and returns that string value where it lies. It
// allocates nothing and skips at memory speed, where encoding/json's
// tokenizer reads ~150 MB/s: that matters for streamed chat completions,
// which OpenInference records with "id" after the whole answer. ok is false
// for anything it does not handle itself (escapes in the key or the id, an
// id that is not printable ASCII or not a string, no id, malformed JSON):
// the decoder then judges.
func scanID(b []byte) (id []byte, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i++
	for {
		i = skipSpace(b, i)
		end, plain := skipString(b, i)
		if end < 0 || !plain {
			return nil, false
		}
		key := b[i+1 : end-1]
		if i = skipSpace(b, end); i >= len(b) || b[i] != ':' {
			return nil, false
		}
		i = skipSpace(b, i+1)
		if isIDKey(key) {
			return scanString(b, i)
		}
		if string(key) == langChainIDPath[0] {
			switch id, found := scanPath(b, i, langChainIDPath[1:]); found {
			case pathFound:
				return id, true
			case pathUnsure:
				return nil, false
			}
			// Absent: on to the next member, past the whole value.
		}
		if i = skipJSON(b, i); i < 0 {
			return nil, false
		}
		if i = skipSpace(b, i); i >= len(b) || b[i] != ',' {
			return nil, false // the end of the object without an id, or malformed
		}
		i++
	}
}

// scanString returns the string value that starts at b[i], an id, where it
// lies; ok is false when it is not a plain string of printable ASCII
// followed by the next member or the end of its object.
func scanString(b []byte, i int) (id []byte, ok bool) {
	end, plain := skipString(b, i)
	if end < 0 || !plain {
		return nil, false
	}
	// The value must be followed by the next member or the end of the
	// object, as the decoder would insist.
	if after := skipSpace(b, end); after >= len(b) || (b[after] != ',' && b[after] != '}') {
		return nil, false
	}
	id = b[i+1 : end-1]
	for _, c := range id {
		// Response ids are printable ASCII. Control characters are not
		// allowed in JSON strings, and the decoder would turn invalid
		// UTF-8 into U+FFFD: both are its to judge.
		if c < 0x20 || c >= 0x80 {
			return nil, false
		}
	}
	return id, true
}

// langChainIDPath is where LangChain's LLMResult, the outputs of a chat
// model run that openinference-instrumentation-langchain records in
// output.value, holds the provider's response id: the response_metadata
// of the first generation's message (langchain-openai puts OpenAI's
// chatcmpl-... or resp_... there). The message's own "id" is LangChain's
// run id for chat completions, and its "llm_output" is null when streaming
// or with the Responses API. A step "[0]" is an array's first element.
var langChainIDPath = [...]string{"generations", "[0]", "[0]", "message", "kwargs", "response_metadata", "id"}

// pathResult is what following a path through a JSON value found.
type pathResult int

const (
	pathAbsent pathResult = iota // the value has no string at the path
	pathFound
	pathUnsure // left to the decoder: escapes, nesting beyond skipJSON's, malformed
)

// scanPath follows path (object keys and "[0]") from the value at b[i] to
// a string, an id, the way scanID reads the top level: the first member of
// a name counts, and each value that is not on the path is skipped
// unread. It reads at most len(path) levels.
func scanPath(b []byte, i int, path []string) ([]byte, pathResult) {
	for _, step := range path {
		i = skipSpace(b, i)
		if i >= len(b) {
			return nil, pathUnsure
		}
		if step == "[0]" {
			if b[i] != '[' {
				return nil, pathAbsent
			}
			if i = skipSpace(b, i+1); i >= len(b) {
				return nil, pathUnsure
			}
			if b[i] == ']' {
				return nil, pathAbsent
			}
			continue
		}
		if b[i] != '{' {
			return nil, pathAbsent
		}
		if i = skipSpace(b, i+1); i < len(b) && b[i] == '}' {
			return nil, pathAbsent
		}
		for {
			end, plain := skipString(b, i)
			if end < 0 || !plain {
				return nil, pathUnsure
			}
			key := b[i+1 : end-1]
			if i = skipSpace(b, end); i >= len(b) || b[i] != ':' {
				return nil, pathUnsure
			}
			i = skipSpace(b, i+1)
			if string(key) == step {
				break
			}
			if i = skipJSON(b, i); i < 0 {
				return nil, pathUnsure
			}
			if i = skipSpace(b, i); i >= len(b) {
				return nil, pathUnsure
			}
			switch b[i] {
			case '}':
				return nil, pathAbsent
			case ',':
				i = skipSpace(b, i+1)
			default:
				return nil, pathUnsure
			}
		}
	}
	if i >= len(b) {
		return nil, pathUnsure
	}
	if b[i] != '"' {
		// A value that is not a string is no id, as the decoder sees it.
		if skipJSON(b, i) < 0 {
			return nil, pathUnsure
		}
		return nil, pathAbsent
	}
	if id, ok := scanString(b, i); ok {
		return id, pathFound
	}
	return nil, pathUnsure
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// skipString returns the index after the string that starts at b[i], or -1
// when there is none; plain is false when it holds escapes.
func skipString(b []byte, i int) (end int, plain bool) {
	if i >= len(b) || b[i] != '"' {
		return -1, false
	}
	plain = true
	for j := i + 1; ; {
		q := bytes.IndexByte(b[j:], '"')
		if q < 0 {
			return -1, false
		}
		bs := bytes.IndexByte(b[j:j+q], '\\')
		if bs < 0 {
			return j + q + 1, plain
		}
		// An escape: skip the character it escapes (a quote, perhaps),
		// then look again. \uXXXX needs nothing more: its digits hold no
		// quote or backslash.
		plain = false
		j += bs + 2
		if j > len(b) {
			return -1, false
		}
	}
}

// skipJSON returns the index after the JSON value that starts at b[i], or
// -1 when it is malformed as far as its brackets and quotes show. Numbers
// and literals are taken as they are: the decoder would refuse a malformed
// one, but no serializer writes one.
func skipJSON(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end, _ := skipString(b, i)
		return end
	case '{', '[':
		var stack [64]byte // the closing bracket of each level; deeper is left to the decoder
		depth := 0
		for i < len(b) {
			switch c := b[i]; c {
			case '"':
				if i, _ = skipString(b, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				if depth == len(stack) {
					return -1
				}
				stack[depth] = c + 2 // '{'+2 == '}', '['+2 == ']'
				depth++
			case '}', ']':
				if depth == 0 || stack[depth-1] != c {
					return -1
				}
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' && b[j] != '\r' && b[j] != '\t' {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}

// isIDKey reports whether a top-level key holds the provider's response id:
// "id" in OpenAI's and Anthropic's answers, "response_id" in Google's
// GenerateContentResponse as google-genai serialises it (its JSON wire
// name, "responseId", too).
func isIDKey(key []byte) bool {
	switch string(key) {
	case "id", "response_id", "responseId":
		return true
	}
	return false
}
