package feedback

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/token"
)

// MaxBodyBytes caps a POST /feedback body.
const MaxBodyBytes = 1 << 20

// Handler returns the feedback API:
//
//	POST /feedback                 one feedback object, or an array of them
//	GET  /feedback/{response_id}   the state of the feedback for a response
//	POST /feedback/tokens          a per-response token (see Config.Tokens)
//	GET  /openapi.json             the OpenAPI document of these routes
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /feedback", s.handlePost)
	mux.HandleFunc("GET /feedback/{response_id}", s.handleGet)
	mux.HandleFunc("POST /feedback/tokens", s.handleMint)
	mux.Handle("GET /openapi.json", openAPIHandler())
	return mux
}

// apiError is the body of every error answer.
type apiError struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Status  int    `json:"status"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// itemStatus is one item's answer in a batch: its status, or why it was
// rejected.
type itemStatus struct {
	Index int `json:"index"`
	*Status
	Error *FieldError `json:"error,omitempty"`
}

type batchAnswer struct {
	Accepted int          `json:"accepted"`
	Rejected int          `json:"rejected"`
	Items    []itemStatus `json:"items"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, field, format string, args ...any) {
	writeJSON(w, code, apiError{Error: errorBody{Status: code, Field: field, Message: fmt.Sprintf(format, args...)}})
}

// bearer returns the credential of the Authorization header, "" if none.
func bearer(r *http.Request) string {
	// The scheme is case-insensitive (RFC 9110, section 11.1).
	scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(got)
}

// isServerToken reports whether cred is the server token.
func (s *Service) isServerToken(cred string) bool {
	return s.cfg.Token != "" && subtle.ConstantTimeCompare([]byte(cred), []byte(s.cfg.Token)) == 1
}

// open reports whether the API takes requests without any credential: no
// server token is configured.
func (s *Service) open() bool { return s.cfg.Token == "" }

func unauthorized(w http.ResponseWriter, format string, args ...any) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="feedback"`)
	writeError(w, http.StatusUnauthorized, "", format, args...)
}

func (s *Service) handlePost(w http.ResponseWriter, r *http.Request) {
	cred := bearer(r)
	server := s.isServerToken(cred)
	if !server && !s.open() && cred == "" && s.cfg.Tokens == nil {
		unauthorized(w, "POST /feedback needs the header Authorization: Bearer <token>")
		return
	}
	if server {
		cred = ""
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "", "the body is over the limit of %d bytes; send smaller batches", MaxBodyBytes)
			return
		}
		writeError(w, http.StatusBadRequest, "", "cannot read the body: %v", err)
		return
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		s.postBatch(w, r, trimmed, server, cred)
		return
	}
	f, tok, ferr := decodeItem(trimmed)
	if ferr != nil {
		writeError(w, http.StatusBadRequest, ferr.Field, "%s", ferr.Message)
		return
	}
	if rf := s.admits(server, cred, tok, &f); rf != nil {
		rf.write(w)
		return
	}
	st, err := s.SubmitAndWait(r.Context(), []Feedback{f})
	if err != nil {
		s.writeSubmitError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, st[0])
}

// postBatch accepts the valid items of a batch and reports each invalid one;
// one bad item does not cost the good ones.
func (s *Service) postBatch(w http.ResponseWriter, r *http.Request, body []byte, server bool, cred string) {
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		writeError(w, http.StatusBadRequest, "", "expected a JSON object or an array of objects: %v", err)
		return
	}
	if len(raw) == 0 {
		writeError(w, http.StatusBadRequest, "", "the batch is empty; send at least one feedback")
		return
	}
	ans := batchAnswer{Items: make([]itemStatus, len(raw))}
	var valid []Feedback
	var at []int
	var wait time.Duration // the longest a token's rate asks for
	limited := 0
	for i, item := range raw {
		ans.Items[i].Index = i
		f, tok, ferr := decodeItem(item)
		if ferr == nil {
			if rf := s.admits(server, cred, tok, &f); rf != nil {
				ferr = fieldErr("token", "%d %s: %s", rf.code, http.StatusText(rf.code), rf.msg)
				if rf.code == http.StatusTooManyRequests {
					limited++
					wait = max(wait, rf.wait)
				}
			}
		}
		if ferr != nil {
			if ferr.Field == "" {
				ferr.Field = fmt.Sprintf("[%d]", i)
			} else {
				ferr.Field = fmt.Sprintf("[%d].%s", i, ferr.Field)
			}
			ans.Items[i].Error = ferr
			ans.Rejected++
			continue
		}
		valid = append(valid, f)
		at = append(at, i)
	}
	if wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
	}
	if len(valid) == 0 {
		code := http.StatusBadRequest
		if limited == len(raw) {
			code = http.StatusTooManyRequests
		}
		writeJSON(w, code, ans)
		return
	}
	st, err := s.SubmitAndWait(r.Context(), valid)
	if err != nil {
		s.writeSubmitError(w, err)
		return
	}
	for j, i := range at {
		ans.Items[i].Status = &st[j]
		ans.Accepted++
	}
	writeJSON(w, http.StatusAccepted, ans)
}

func (s *Service) writeSubmitError(w http.ResponseWriter, err error) {
	var ferr *FieldError
	if errors.As(err, &ferr) {
		writeError(w, http.StatusBadRequest, ferr.Field, "%s", ferr.Message)
		return
	}
	if errors.Is(err, ErrBatchTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, "", "the batch holds more than this proxy keeps pending at once (%d feedbacks, %d bytes; three quarters of each for responses whose span has not come through): send smaller batches", s.cfg.MaxPending, s.cfg.MaxBytes)
		return
	}
	if errors.Is(err, ErrFullWaiting) {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusTooManyRequests, "", "feedback for responses whose span has not come through holds its share (3/4) of this proxy's limits (%d feedbacks, %d bytes); "+
			"feedback for responses already seen is still taken; retry later", s.cfg.MaxPending, s.cfg.MaxBytes)
		return
	}
	if errors.Is(err, ErrFullBytes) {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusTooManyRequests, "", "the feedback pending holds the %d bytes of memory this proxy keeps for it; retry later", s.cfg.MaxBytes)
		return
	}
	if errors.Is(err, ErrFull) {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusTooManyRequests, "", "%d feedbacks are pending, the most this proxy keeps; retry later", s.cfg.MaxPending)
		return
	}
	// Nothing was accepted: the service is shutting down, or the data
	// directory refused the write.
	w.Header().Set("Retry-After", "5")
	if errors.Is(err, ErrStore) {
		writeError(w, http.StatusServiceUnavailable, "", "the feedback could not be stored, so none of it was accepted; retry later")
		return
	}
	writeError(w, http.StatusServiceUnavailable, "", "%v", err)
}

// item is one feedback object as POST /feedback takes it: a Feedback and,
// for navigator.sendBeacon, which cannot set headers, the per-response
// token in the body. The token is not kept with the feedback.
type item struct {
	Feedback
	Token string `json:"token,omitempty"`
}

// decodeItem decodes and normalizes one feedback object, naming the field
// at fault when it cannot, and returns it with its token field.
func decodeItem(b []byte) (Feedback, string, *FieldError) {
	var in item
	f := &in.Feedback
	// metadata is decoded into maps and slices of interfaces, many times
	// the size of its text: its size is checked on the text first.
	var raw struct {
		Metadata json.RawMessage `json:"metadata"`
	}
	if json.Unmarshal(b, &raw) == nil && len(raw.Metadata) > MaxMetadataBytes {
		var compact bytes.Buffer
		if json.Compact(&compact, raw.Metadata) == nil && compact.Len() > MaxMetadataBytes {
			return *f, "", fieldErr("metadata", "at most %d bytes as JSON, got %d", MaxMetadataBytes, compact.Len())
		}
	}
	if ferr := decodeStrict(b, &in, itemFields); ferr != nil {
		return *f, "", ferr
	}
	// encoding/json turns invalid UTF-8 into U+FFFD without a word: refuse it
	// here, where the bytes are still there, rather than store mangled text.
	if !utf8.Valid(b) {
		return *f, "", invalidUTF8(b)
	}
	if _, ferr := prepare(f, MaxMetadataBytes); ferr != nil {
		return *f, "", ferr
	}
	return *f, in.Token, nil
}

// itemFields are the fields of a feedback object, as POST /feedback takes it.
var itemFields = []string{"response_id", "thumbs", "label", "score", "explanation", "comment", "target", "name", "identifier", "metadata", "annotator_kind", "token"}

// decodeStrict decodes the one JSON object b into v, refusing what
// encoding/json lets through: fields named other than exactly as fields
// lists them (it matches names without regard to case), and anything
// after the object.
func decodeStrict(b []byte, v any, fields []string) *FieldError {
	var names map[string]json.RawMessage
	if json.Unmarshal(b, &names) == nil {
		for _, name := range slices.Sorted(maps.Keys(names)) {
			if !slices.Contains(fields, name) {
				return fieldErr(name, "unknown field; expected %s", strings.Join(fields, ", "))
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		ferr := jsonFieldError(err)
		if ferr.Field != "" && strings.HasPrefix(ferr.Message, "unknown field") {
			ferr.Message = "unknown field; expected " + strings.Join(fields, ", ")
		}
		return ferr
	}
	// Anything but the end after the value is garbage, a stray } or ] too
	// (which Decoder.More does not report).
	if _, err := dec.Token(); err != io.EOF {
		return &FieldError{Message: "expected one JSON value; found more after it"}
	}
	return nil
}

// jsonFieldError turns an encoding/json error into a field error.
func jsonFieldError(err error) *FieldError {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		if te.Field == "" {
			return &FieldError{Message: fmt.Sprintf("expected a JSON object, got %s", te.Value)}
		}
		// Fields of the Feedback embedded in item are named as the
		// client wrote them.
		return fieldErr(strings.TrimPrefix(te.Field, "Feedback."), "expected %s, got %s", jsonType(te.Type.String()), te.Value)
	case errors.As(err, &se):
		return &FieldError{Message: fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se)}
	case errors.Is(err, io.EOF):
		return &FieldError{Message: "the body is empty; expected a JSON object"}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fieldErr(strings.Trim(name, `"`), "unknown field; expected response_id, thumbs, label, score, explanation, comment, target, name, identifier, metadata, annotator_kind, token")
	}
	return &FieldError{Message: "malformed JSON: " + err.Error()}
}

// invalidUTF8 names the field whose value holds invalid UTF-8 in
// the JSON object b.
func invalidUTF8(b []byte) *FieldError {
	var fields map[string]json.RawMessage
	if json.Unmarshal(b, &fields) == nil {
		// Names are already valid here (unknown ones were refused); values
		// are still raw bytes.
		for _, name := range slices.Sorted(maps.Keys(fields)) {
			if !utf8.Valid(fields[name]) {
				return fieldErr(name, "expected valid UTF-8 text")
			}
		}
	}
	return &FieldError{Message: "expected valid UTF-8 text"}
}

func jsonType(goType string) string {
	switch goType {
	case "string", "*string":
		return "a string"
	case "float64", "*float64":
		return "a finite number"
	case "map[string]interface {}":
		return "a JSON object"
	}
	return goType
}

// ResponseState is the body of GET /feedback/{response_id}: whether the
// span of the response is indexed, which span it is, and the feedback kept
// for the response.
type ResponseState struct {
	ResponseID string   `json:"response_id"`
	Indexed    bool     `json:"indexed"`
	Span       *SpanRef `json:"span,omitempty"`
	Feedback   []Status `json:"feedback"`
}

// SpanRef names the span a response id resolves to.
type SpanRef struct {
	TraceID string `json:"trace_id"`
	SpanID  string `json:"span_id"`
	Project string `json:"project"`
	Name    string `json:"name"`
}

// handleGet answers the state of a response's feedback. It takes the
// server token, or a per-response token for that response: a page can show
// the vote its user made. Its answer shows identifiers, often user ids, so
// a token sees only the feedback of its own identifier ("" for a token
// bound to none).
func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("response_id")
	var only *token.Claims
	if cred := bearer(r); !s.open() && !s.isServerToken(cred) {
		if cred == "" && s.cfg.Tokens == nil {
			unauthorized(w, "GET /feedback needs the header Authorization: Bearer <token>")
			return
		}
		c, rf := s.verify(cred)
		if rf == nil && c.ResponseID != id {
			rf = &refusal{code: http.StatusForbidden, msg: fmt.Sprintf("%v: it is for %q", token.ErrWrongResponse, c.ResponseID)}
		}
		if rf != nil {
			rf.write(w)
			return
		}
		only = &c
	}
	if len(id) > MaxResponseIDLen {
		writeError(w, http.StatusBadRequest, "response_id", "at most %d bytes, got %d", MaxResponseIDLen, len(id))
		return
	}
	ans := ResponseState{ResponseID: id, Feedback: s.Lookup(id)}
	if only != nil {
		ans.Feedback = slices.DeleteFunc(ans.Feedback, func(st Status) bool { return st.Identifier != only.Identifier })
	}
	if ans.Feedback == nil {
		ans.Feedback = []Status{}
	}
	if span, ok := s.resolver.Lookup(id); ok {
		ans.Indexed = true
		ans.Span = spanRefOf(span)
	}
	code := http.StatusOK
	if !ans.Indexed && len(ans.Feedback) == 0 {
		code = http.StatusNotFound
	}
	writeJSON(w, code, ans)
}

func spanRefOf(s index.Span) *SpanRef {
	return &SpanRef{TraceID: s.TraceID.String(), SpanID: s.SpanID.String(), Project: s.Project, Name: s.Name}
}

func sortStatuses(st []Status) {
	sort.Slice(st, func(i, j int) bool {
		if st[i].Name != st[j].Name {
			return st[i].Name < st[j].Name
		}
		return st[i].Identifier < st[j].Identifier
	})
}
