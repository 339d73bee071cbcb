package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// phoenixClient checks that Phoenix is up and builds links into its UI.
type phoenixClient struct {
	base   string // where the demo reaches Phoenix
	ui     string // where a browser does
	apiKey string // PHOENIX_API_KEY, for a Phoenix with auth on
	http   *http.Client
}

func newPhoenixClient(base, ui, apiKey string) *phoenixClient {
	return &phoenixClient{base: base, ui: ui, apiKey: apiKey, http: &http.Client{Timeout: 10 * time.Second}}
}

// check makes sure Phoenix answers GET /healthz with OK.
func (p *phoenixClient) check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		if unreachable(err) {
			return &errUnreachable{
				msg: fmt.Sprintf("Phoenix is not running on %s: run `make demo`, or start it with `scripts/phoenix.sh start` (or point --phoenix-url at it)", hostOf(p.base)),
				err: err,
			}
		}
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "OK") {
		return fmt.Errorf("%s/healthz answers HTTP %d %.40q, not Phoenix's OK: is --phoenix-url Phoenix?", p.base, resp.StatusCode, body)
	}
	return nil
}

// projectID returns the id the UI uses in its paths for the project named
// name (GET /v1/projects).
func (p *phoenixClient) projectID(ctx context.Context, name string) (string, error) {
	cursor := ""
	for range 20 {
		q := url.Values{"limit": {"100"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/v1/projects?"+q.Encode(), nil)
		if err != nil {
			return "", err
		}
		if p.apiKey != "" {
			req.Header.Set("Authorization", "Bearer "+p.apiKey)
		}
		resp, err := p.http.Do(req)
		if err != nil {
			return "", err
		}
		var page struct {
			Data []struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"data"`
			NextCursor *string `json:"next_cursor"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&page)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GET /v1/projects: HTTP %d", resp.StatusCode)
		}
		if err != nil {
			return "", fmt.Errorf("GET /v1/projects: %w", err)
		}
		for _, pr := range page.Data {
			if pr.Name == name {
				return pr.ID, nil
			}
		}
		if page.NextCursor == nil || *page.NextCursor == "" {
			break
		}
		cursor = *page.NextCursor
	}
	return "", fmt.Errorf("no project %q in Phoenix", name)
}

// spanURL is Phoenix's own deep link to a span by its OpenTelemetry id: the
// UI (route /redirects/spans/:span_otel_id) looks the span up and opens its
// trace with the span selected, at
// /projects/{project id}/spans/{trace id}?selectedSpanNodeId={span node id}.
func spanURL(ui, spanID string) string {
	return ui + "/redirects/spans/" + url.PathEscape(spanID)
}

// traceURL is the UI's page of a trace: /projects/{project id}/traces/{trace id}.
func traceURL(ui, projectID, traceID string) string {
	return ui + "/projects/" + url.PathEscape(projectID) + "/traces/" + url.PathEscape(traceID)
}
