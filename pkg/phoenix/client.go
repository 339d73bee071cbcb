package phoenix

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/retryafter"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig"
)

// Config configures a Client.
type Config struct {
	// BaseURL is the REST base, e.g. "http://localhost:6006", or with the path prefix of a
	// Phoenix served under PHOENIX_HOST_ROOT_PATH ("https://example.com/phoenix"). Required.
	BaseURL string
	// APIKey is sent as "Authorization: Bearer <key>" when non-empty; it wins over an
	// Authorization entry in Headers.
	APIKey string
	// Headers are added to every request (PHOENIX_CLIENT_HEADERS). Nil: none.
	Headers map[string]string
	// HTTPClient sends the requests. Nil: a client with a 10 s timeout.
	HTTPClient *http.Client
	// TLS names the files an https BaseURL is reached with: the CAs Phoenix's certificate must
	// chain to (instead of the system's) and a client certificate, each read again when it
	// changes. The zero value trusts the system's roots and presents no certificate. It
	// configures the client New makes: an HTTPClient given is used as it is.
	TLS tlsconfig.ClientConfig
}

// DefaultTimeout is the timeout of the HTTP client New makes when Config.HTTPClient is nil.
const DefaultTimeout = 10 * time.Second

// maxResponseBytes bounds every answer body read: Phoenix's answers to our requests are small,
// and an answer larger than this is a misconfiguration (wrong BaseURL), not data.
const maxResponseBytes = 1 << 20

// maxDrainBytes is how much of an unread body is read away so that the connection can be reused;
// beyond that, closing the connection is cheaper.
const maxDrainBytes = 64 << 10

// Client talks to the Phoenix REST API. It is safe for concurrent use.
type Client struct {
	base    string // scheme://host[/prefix], no trailing slash
	apiKey  string
	headers http.Header
	hc      *http.Client
}

// New checks cfg and returns a Client. It does no I/O.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		return nil, errors.New("phoenix: BaseURL is required")
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("phoenix: BaseURL %q: %w", cfg.BaseURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("phoenix: BaseURL %q: want an absolute http:// or https:// URL", cfg.BaseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("phoenix: BaseURL %q: want no query, fragment or user info", cfg.BaseURL)
	}
	headers := make(http.Header, len(cfg.Headers))
	for k, v := range cfg.Headers {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, fmt.Errorf("phoenix: Headers: invalid header name %q", k)
		}
		if !httpguts.ValidHeaderFieldValue(v) {
			return nil, fmt.Errorf("phoenix: Headers: invalid value for header %q", k)
		}
		headers.Set(k, v)
	}
	if !httpguts.ValidHeaderFieldValue(cfg.APIKey) {
		return nil, errors.New("phoenix: APIKey holds characters not allowed in a header")
	}
	if err := cfg.TLS.Validate(); err != nil {
		return nil, fmt.Errorf("phoenix: TLS: %w", err)
	}
	if cfg.TLS.Enabled() && u.Scheme != "https" {
		return nil, fmt.Errorf("phoenix: BaseURL %q: TLS files are given, but the URL is not https://", cfg.BaseURL)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
		if cfg.TLS.Enabled() {
			files, err := tlsconfig.NewClient(cfg.TLS, tlsconfig.Options{Name: "phoenix"})
			if err != nil {
				return nil, err
			}
			hc.Transport = files.Transport(http.DefaultTransport.(*http.Transport).Clone())
		}
	}
	return &Client{
		base:    strings.TrimRight(u.String(), "/"),
		apiKey:  cfg.APIKey,
		headers: headers,
		hc:      hc,
	}, nil
}

// do sends one request with a JSON body (nil: none) and decodes a 2xx JSON answer into out
// (nil: ignore it). path is already escaped; it starts with "/v1/" or is "/graphql".
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("phoenix: %s %s: encoding request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	target := c.base + path
	if len(query) > 0 {
		// Encode sorts by key: the same query gives the same URL, which recorded tests rely on.
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return fmt.Errorf("phoenix: %s %s: %w", method, path, err)
	}
	for k, v := range c.headers {
		req.Header[k] = v
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}

	resp, err := c.hc.Do(req)
	if err != nil {
		return &transportError{method: method, path: path, err: err}
	}
	data, readErr := readBody(resp.Body)

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// A truncated or cut-short error body still tells the status, which is what matters.
		return &APIError{
			StatusCode: resp.StatusCode,
			Message:    errorMessage(data),
			RetryAfter: retryafter.Parse(resp.Header.Get("Retry-After"), time.Now()),
			method:     method,
			path:       path,
		}
	}
	if readErr != nil {
		if errors.Is(readErr, errBodyTooLarge) {
			return &UnreadableAnswerError{StatusCode: resp.StatusCode, Err: readErr, method: method, path: path}
		}
		// Cut short: the status says the request was done, but a retry is as harmless as it is
		// for any transport error (annotations upsert) and gets a readable answer.
		return &transportError{method: method, path: path, err: readErr}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &UnreadableAnswerError{StatusCode: resp.StatusCode, Err: fmt.Errorf("decoding: %w", err), method: method, path: path}
	}
	return nil
}

var errBodyTooLarge = fmt.Errorf("answer body larger than %d bytes", maxResponseBytes)

// readBody reads at most maxResponseBytes of body, then drains a little more so the connection
// can be reused, and closes it. On errBodyTooLarge it returns the first maxResponseBytes.
func readBody(body io.ReadCloser) ([]byte, error) {
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrainBytes))
		_ = body.Close()
	}()
	data, err := io.ReadAll(io.LimitReader(body, maxResponseBytes+1))
	if err != nil {
		return data, err
	}
	if len(data) > maxResponseBytes {
		return data[:maxResponseBytes], errBodyTooLarge
	}
	return data, nil
}

// projectPath is /v1/projects/{project}/{rest}, the project name escaped as one path segment.
func projectPath(project, rest string) (string, error) {
	if strings.TrimSpace(project) == "" {
		return "", errors.New("phoenix: project is empty")
	}
	// Phoenix routes on the decoded path, so an escaped slash would still split the name.
	if strings.ContainsAny(project, "/?#") {
		return "", fmt.Errorf("phoenix: project %q: a project name used in a URL cannot contain '/', '?' or '#'", project)
	}
	return "/v1/projects/" + url.PathEscape(project) + "/" + rest, nil
}
