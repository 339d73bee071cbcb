package llmserver

import (
	"encoding/json"
	"strings"
	"unicode"
)

// maxPieceRunes cuts long words so that pieces stay token-sized.
const maxPieceRunes = 8

// pieces splits text the way a tokenizer roughly does: a word with its leading
// space, a punctuation mark, or a chunk of a long word. Streams send one piece
// per delta and usage counts one token per piece, so the two agree. Joining
// the pieces gives text back.
func pieces(text string) []string {
	var out []string
	start, letters := 0, 0
	prevPunct := false
	for i, r := range text {
		punct := unicode.IsPunct(r) || unicode.IsSymbol(r)
		split := false
		switch {
		case i == start:
		case unicode.IsSpace(r):
			split = letters > 0 || prevPunct
		case punct, prevPunct:
			split = true
		case letters >= maxPieceRunes:
			split = true
		}
		if split {
			out = append(out, text[start:i])
			start, letters = i, 0
		}
		if !unicode.IsSpace(r) && !punct {
			letters++
		}
		prevPunct = punct
	}
	if start < len(text) {
		out = append(out, text[start:])
	}
	return out
}

// countTokens estimates the token count of text, at least 1 for non-empty text.
func countTokens(text string) int {
	return len(pieces(text))
}

// messageOverhead is what OpenAI's chat format adds per message, and
// replyPriming what it adds once per prompt (see the cookbook's
// num_tokens_from_messages).
const (
	messageOverhead = 3
	replyPriming    = 3
)

// contentText extracts the text of a message content, which is either a
// string or an array of parts ({"type":"text"|"input_text"|"output_text",
// "text":...}). Other parts (images, audio, files) carry no text. ok is false
// when raw is neither.
func contentText(raw json.RawMessage) (text string, ok bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", true
	}
	if err := json.Unmarshal(raw, &text); err == nil {
		return text, true
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", false
	}
	var texts []string
	for _, p := range parts {
		switch p.Type {
		case "text", "input_text", "output_text":
			texts = append(texts, p.Text)
		}
	}
	return strings.Join(texts, "\n"), true
}
