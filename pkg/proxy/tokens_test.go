package proxy

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The proxy started with a token key file mints tokens for the backend,
// takes them from pages, and serves the widget on the same listener.
func TestTokenKeysFileAndWidget(t *testing.T) {
	_, phxURL := newFakePhoenix(t)
	keysFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keysFile, []byte("# the signing key\n"+strings.Repeat("cd", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := localConfig(phxURL)
	cfg.Feedback.Token = "s3cret"
	cfg.TokenKeysFile = keysFile
	p, ctx, client := runProxy(t, cfg)
	base := "http://" + p.Addrs().Feedback

	code, body := doRequest(t, ctx, client, "GET", base+"/widget.js", "", nil)
	if code != http.StatusOK || !strings.Contains(body, "data-feedback-response-id") {
		t.Errorf("GET /widget.js: %d, %d bytes", code, len(body))
	}

	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/feedback/tokens", strings.NewReader(`{"response_id":"chatcmpl-w","identifier":"u1"}`))
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var minted struct {
		Token string `json:"token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&minted)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || err != nil || !strings.HasPrefix(minted.Token, "fbt1.") {
		t.Fatalf("POST /feedback/tokens: %d %v %q", resp.StatusCode, err, minted.Token)
	}

	for _, tc := range []struct {
		tok      string
		wantCode int
	}{{minted.Token, http.StatusAccepted}, {minted.Token + "x", http.StatusUnauthorized}} {
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/feedback", strings.NewReader(`{"response_id":"chatcmpl-w","thumbs":"up"}`))
		req.Header.Set("Authorization", "Bearer "+tc.tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.wantCode {
			t.Errorf("POST /feedback with a token: %d, want %d", resp.StatusCode, tc.wantCode)
		}
	}
}

func TestTokenKeysFileMissing(t *testing.T) {
	cfg := localConfig("http://127.0.0.1:1")
	cfg.TokenKeysFile = filepath.Join(t.TempDir(), "none")
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "token keys") {
		t.Errorf("New with a missing key file: %v", err)
	}
}
