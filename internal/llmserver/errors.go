package llmserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
)

// maxBodyBytes bounds request bodies; OpenAI's own limit is far larger, but
// test prompts are small.
const maxBodyBytes = 8 << 20

// apiError is the body of an OpenAI error answer:
// {"error":{"message":...,"type":...,"param":...,"code":...}}, with param and
// code null when empty.
type apiError struct {
	Message string
	Type    string
	Param   string
	Code    string
}

func (e apiError) MarshalJSON() ([]byte, error) {
	orNull := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	return json.Marshal(struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	}{e.Message, e.Type, orNull(e.Param), orNull(e.Code)})
}

func writeError(w http.ResponseWriter, status int, e apiError) {
	writeJSON(w, status, struct {
		Error apiError `json:"error"`
	}{e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only our own types are marshalled; this is a programming error.
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

func missingParam(name string) apiError {
	return apiError{
		Message: fmt.Sprintf("Missing required parameter: '%s'.", name),
		Type:    "invalid_request_error",
		Param:   name,
		Code:    "missing_required_parameter",
	}
}

func invalidType(param, expected string) apiError {
	return apiError{
		Message: fmt.Sprintf("Invalid type for '%s': expected %s.", param, expected),
		Type:    "invalid_request_error",
		Param:   param,
		Code:    "invalid_type",
	}
}

// bodyError says why a request body could not be decoded, for each API to
// phrase in its own way.
type bodyError struct {
	tooLarge int64 // the limit, when the body exceeded it
	readErr  error // the body could not be read
	field    string
	kind     reflect.Kind // with field: the JSON value had the wrong type for it
	got      string       // with field: the JSON type found
	syntax   error        // not JSON
}

// readBody reads a JSON request body into v.
func readBody(w http.ResponseWriter, r *http.Request, v any) *bodyError {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &bodyError{tooLarge: tooBig.Limit}
		}
		return &bodyError{readErr: err}
	}
	err = json.Unmarshal(body, v)
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return &bodyError{field: typeErr.Field, kind: typeErr.Type.Kind(), got: typeErr.Value}
	default:
		return &bodyError{syntax: err}
	}
}

// decodeBody reads a JSON request body into v. On failure it writes the error
// OpenAI would and returns false.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	e := readBody(w, r, v)
	switch {
	case e == nil:
		return true
	case e.tooLarge > 0:
		writeError(w, http.StatusRequestEntityTooLarge, apiError{
			Message: fmt.Sprintf("Request body too large: the limit is %d bytes.", e.tooLarge),
			Type:    "invalid_request_error",
		})
	case e.readErr != nil:
		writeError(w, http.StatusBadRequest, apiError{Message: "Could not read the request body: " + e.readErr.Error(), Type: "invalid_request_error"})
	case e.field != "":
		writeError(w, http.StatusBadRequest, invalidType(e.field, "a value of type "+jsonTypeName(e.kind)+", but got "+e.got))
	default:
		writeError(w, http.StatusBadRequest, apiError{
			Message: "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
			Type:    "invalid_request_error",
		})
	}
	return false
}

// jsonTypeName names a Go kind the way a JSON user would.
func jsonTypeName(kind reflect.Kind) string {
	switch kind {
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Struct, reflect.Map, reflect.Pointer:
		return "object"
	case reflect.Bool:
		return "boolean"
	case reflect.String:
		return "string"
	default:
		return "number"
	}
}
