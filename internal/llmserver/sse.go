package llmserver

import (
	"encoding/json"
	"net/http"
)

// sseWriter writes server-sent events and flushes each one, so that clients
// see chunks as they come, as from OpenAI.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	r  *http.Request
	// eol ends lines: "\n", or "\r\n" as the Gemini API sends.
	eol string
}

func startSSE(w http.ResponseWriter, r *http.Request) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	return &sseWriter{w: w, rc: http.NewResponseController(w), r: r, eol: "\n"}
}

// send writes one event: an "event:" line when name is set (the Responses and
// Anthropic APIs name their events; chat completions and Gemini do not), then
// "data:" with v as JSON.
// It returns false once the client has gone, so the caller can stop.
func (s *sseWriter) send(name string, v any) bool {
	data, err := json.Marshal(v)
	if err != nil {
		return false
	}
	return s.sendRaw(name, data)
}

func (s *sseWriter) sendRaw(name string, data []byte) bool {
	if s.r.Context().Err() != nil {
		return false
	}
	var buf []byte
	if name != "" {
		buf = append(buf, "event: "+name+s.eol...)
	}
	buf = append(buf, "data: "...)
	buf = append(buf, data...)
	buf = append(buf, s.eol+s.eol...)
	if _, err := s.w.Write(buf); err != nil {
		return false
	}
	// Flushing is not supported by every ResponseWriter (e.g. in some
	// wrappers); the data then goes out when the handler returns.
	_ = s.rc.Flush()
	return true
}
