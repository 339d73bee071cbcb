package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
)

// The states of a feedback, as GET /feedback/{response_id} reports them.
const (
	statePending   = feedback.Pending
	stateAnnotated = feedback.Annotated
)

// proxyClient talks to the proxy's feedback API with nothing but the
// response id, as an app in any language would: this file is all the
// feedback code an app needs.
type proxyClient struct {
	base  string // http://localhost:8080
	token string
	http  *http.Client
	// interval is the pause between two GET /feedback/{id} while waiting.
	interval time.Duration
}

func newProxyClient(base, token string) *proxyClient {
	return &proxyClient{base: base, token: token, http: &http.Client{Timeout: 10 * time.Second}, interval: 250 * time.Millisecond}
}

type apiError struct {
	Error struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"error"`
}

// errUnreachable wraps the errors of a proxy or Phoenix that does not
// answer at all, which are worth retrying while they start.
type errUnreachable struct {
	msg string
	err error
}

func (e *errUnreachable) Error() string {
	// The dial error alone: the URL is in msg already.
	var op *net.OpError
	if errors.As(e.err, &op) {
		return e.msg + " (" + op.Error() + ")"
	}
	return e.msg + " (" + e.err.Error() + ")"
}
func (e *errUnreachable) Unwrap() error { return e.err }

// unreachable reports whether err is a failure to connect (refused,
// unknown host, timeout) rather than an answer.
func unreachable(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	var ue *url.Error
	return errors.As(err, &op) || errors.As(err, &dns) || (errors.As(err, &ue) && ue.Timeout())
}

func hostOf(base string) string {
	if u, err := url.Parse(base); err == nil && u.Host != "" {
		return u.Host
	}
	return base
}

func (c *proxyClient) notRunning(err error) error {
	return &errUnreachable{
		msg: fmt.Sprintf("the proxy is not running on %s: run `make demo`, or start it with `go run ./cmd/proxy` (or point --feedback-url at it)", hostOf(c.base)),
		err: err,
	}
}

// probeID is a response id no provider issues, looked up to check that the
// feedback API answers.
const probeID = "demo-reachability-check"

// check makes sure the feedback proxy answers at c.base.
func (c *proxyClient) check(ctx context.Context) error {
	got, code, err := c.lookup(ctx, probeID)
	if err != nil {
		return err
	}
	if got.ResponseID != probeID {
		return fmt.Errorf("%s answers GET /feedback/{id} with HTTP %d, but not as the feedback proxy does: is --feedback-url the proxy's feedback address?", c.base, code)
	}
	return nil
}

// send posts a thumbs up or down for the response. The proxy answers at
// once: "pending" while the span has not reached it, "annotated" when
// Phoenix has the annotation already.
func (c *proxyClient) send(ctx context.Context, responseID string, satisfied bool) (feedback.Status, error) {
	thumbs := "down"
	if satisfied {
		thumbs = "up"
	}
	body, _ := json.Marshal(map[string]string{"response_id": responseID, "thumbs": thumbs})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/feedback", bytes.NewReader(body))
	if err != nil {
		return feedback.Status{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	var st feedback.Status
	_, err = c.do(req, &st, http.StatusAccepted)
	var ue *errUnreachable
	if err != nil && !errors.As(err, &ue) {
		return st, fmt.Errorf("POST /feedback: %w", err)
	}
	return st, err
}

// lookup returns the proxy's state for a response id. A 404 is an answer
// too: the proxy knows neither the span nor a feedback yet.
func (c *proxyClient) lookup(ctx context.Context, responseID string) (feedback.ResponseState, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/feedback/"+url.PathEscape(responseID), nil)
	if err != nil {
		return feedback.ResponseState{}, 0, err
	}
	var l feedback.ResponseState
	code, err := c.do(req, &l, http.StatusOK, http.StatusNotFound)
	var ue *errUnreachable
	if err != nil && !errors.As(err, &ue) {
		return l, code, fmt.Errorf("GET /feedback/%s: %w", responseID, err)
	}
	return l, code, err
}

// waitDone polls until the feedback named name for responseID is no longer
// pending, or timeout passes; it returns the last state seen.
func (c *proxyClient) waitDone(ctx context.Context, responseID, name string, timeout time.Duration) (feedback.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last feedback.Status
	for {
		l, _, err := c.lookup(ctx, responseID)
		if err != nil && ctx.Err() == nil {
			return last, err
		}
		for _, st := range l.Feedback {
			if st.Name == name {
				last = st
			}
		}
		if last.State != "" && last.State != statePending {
			return last, nil
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("still %s after %s (%s)", orUnknown(string(last.State)), timeout, orUnknown(last.Reason))
		case <-time.After(c.interval):
		}
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "no state"
	}
	return s
}

// do sends req and decodes a JSON answer with one of the ok statuses into
// v; other answers become errors that say what to do.
func (c *proxyClient) do(req *http.Request, v any, ok ...int) (int, error) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if unreachable(err) {
			return 0, c.notRunning(err)
		}
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("read the answer: %w", err)
	}
	for _, code := range ok {
		if resp.StatusCode == code {
			if err := json.Unmarshal(body, v); err != nil {
				return resp.StatusCode, fmt.Errorf("HTTP %d with a body that is not the proxy's JSON (%.80q): is %s the proxy's feedback address?", resp.StatusCode, body, c.base)
			}
			return resp.StatusCode, nil
		}
	}
	var e apiError
	msg := fmt.Sprintf("%.200q", body)
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		msg = e.Error.Message
		if e.Error.Field != "" {
			msg = e.Error.Field + ": " + msg
		}
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return resp.StatusCode, fmt.Errorf("HTTP 401: the proxy requires a token: set FEEDBACK_PROXY_FEEDBACK_TOKEN or --feedback-token to the proxy's (%s)", msg)
	}
	return resp.StatusCode, fmt.Errorf("HTTP %d: %s", resp.StatusCode, msg)
}

// retryUnreachable calls f until it succeeds, fails otherwise than by an
// unreachable server, or wait has passed.
func retryUnreachable(ctx context.Context, wait time.Duration, f func(context.Context) error) error {
	deadline := time.Now().Add(wait)
	for {
		err := f(ctx)
		var ue *errUnreachable
		if err == nil || !errors.As(err, &ue) || !time.Now().Before(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}
