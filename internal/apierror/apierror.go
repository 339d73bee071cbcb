// Package apierror writes an error answer in the shape of the feedback
// API's (pkg/feedback): {"error":{"status":429,"message":"..."}}, for the
// parts in front of it (CORS, rate limits) that answer for it.
package apierror

import (
	"encoding/json"
	"net/http"
)

// Body is the JSON body of an error answer.
type Body struct {
	Error Detail `json:"error"`
}

// Detail says what went wrong: the status again, and a message that says
// what was expected.
type Detail struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
}

// Write answers w with status code and msg.
func Write(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(Body{Detail{Status: code, Message: msg}})
}
