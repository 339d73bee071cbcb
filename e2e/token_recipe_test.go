//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/token"
)

// recipe is a minter of feedback tokens written from docs/tokens.md in
// another language, with its standard library only.
type recipe struct {
	name string
	cmd  func(t *testing.T) []string // the command, before mint or verify
}

var recipes = []recipe{
	{"python", func(t *testing.T) []string {
		return []string{python(t), filepath.Join("apps", "mint_token.py")}
	}},
	// node:crypto only; tsx (pinned by e2e/apps/ts's lockfile) runs the
	// TypeScript as it is, since Node 20 cannot.
	{"typescript", func(t *testing.T) []string {
		tsx, err := filepath.Abs(filepath.Join(tsAppDir, "node_modules", ".bin", "tsx"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(tsx); err != nil {
			t.Fatalf("%v: run scripts/e2e.sh (or make e2e), which installs e2e/apps/ts (npm ci)", err)
		}
		return []string{tsx, filepath.Join("apps", "mint_token.ts")}
	}},
}

// run runs the recipe's command with args, and returns its stdout, its
// stderr and whether it exited with 0.
func (r recipe) run(t *testing.T, args ...string) (string, string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := append(r.cmd(t), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), strings.TrimSpace(stderr.String()), err == nil
}

func (r recipe) mint(t *testing.T, key []byte, c token.Claims) string {
	t.Helper()
	args := []string{"mint", "--key", hex.EncodeToString(key), "--response-id", c.ResponseID,
		"--exp", strconv.FormatInt(c.Expires.Unix(), 10)}
	if c.Identifier != "" {
		args = append(args, "--identifier", c.Identifier)
	}
	for _, n := range c.Names {
		args = append(args, "--name", n)
	}
	out, errOut, ok := r.run(t, args...)
	if !ok {
		t.Fatalf("%s mint: %s", r.name, errOut)
	}
	return out
}

func newKey(t *testing.T) ([]byte, string) {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return key, hex.EncodeToString(key)
}

func parseKeys(t *testing.T, hexKeys ...string) *token.Keys {
	t.Helper()
	k, err := token.ParseKeys([]byte(strings.Join(hexKeys, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestTokenRecipe checks the recipe of docs/tokens.md in Python and
// TypeScript against pkg/token, both ways: their tokens verify in Go with
// the claims they were minted with, Go's tokens verify in theirs, and the
// worked example comes out byte for byte the same.
func TestTokenRecipe(t *testing.T) {
	now := time.Now()
	for _, r := range recipes {
		t.Run(r.name, func(t *testing.T) {
			t.Run("the worked example", func(t *testing.T) {
				key, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
				c := token.Claims{ResponseID: "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", Identifier: "user-42",
					Names: []string{"user feedback"}, Expires: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
				want, err := parseKeys(t, hex.EncodeToString(key)).Mint(c)
				if err != nil {
					t.Fatal(err)
				}
				if got := r.mint(t, key, c); got != want {
					t.Errorf("%s minted\n%s\nGo mints\n%s", r.name, got, want)
				}
			})

			key, keyHex := newKey(t)
			keys := parseKeys(t, keyHex)
			claims := []token.Claims{
				{ResponseID: "resp_68af" + strconv.FormatInt(now.UnixNano(), 36), Expires: now.Add(time.Hour)},
				// Non-ASCII text comes escaped from Python (ensure_ascii), raw
				// from JSON.stringify; <, > and & as they are from both.
				{ResponseID: "msg_01XFDUDYJgAACzvnptvVoYEL", Identifier: "ユーザー ü 😀", Names: []string{"user feedback", "a&b<c>", "naïve"}, Expires: now.Add(token.DefaultTTL)},
			}
			for i, c := range claims {
				t.Run("minted by "+r.name+", verified by Go "+strconv.Itoa(i), func(t *testing.T) {
					got, err := keys.Verify(r.mint(t, key, c), now)
					if err != nil {
						t.Fatal(err)
					}
					if got.ResponseID != c.ResponseID || got.Identifier != c.Identifier || !slices.Equal(got.Names, c.Names) || got.Expires.Unix() != c.Expires.Unix() {
						t.Errorf("Go read %+v, expected %+v", got, c)
					}
				})
				t.Run("minted by Go, verified by "+r.name+" "+strconv.Itoa(i), func(t *testing.T) {
					tok, err := keys.Mint(c)
					if err != nil {
						t.Fatal(err)
					}
					out, errOut, ok := r.run(t, "verify", "--key", keyHex, "--now", strconv.FormatInt(now.Unix(), 10), tok)
					if !ok {
						t.Fatalf("%s refused Go's token: %s", r.name, errOut)
					}
					var got struct {
						ResponseID string   `json:"response_id"`
						Identifier string   `json:"identifier"`
						Names      []string `json:"names"`
						Exp        int64    `json:"exp"`
					}
					if err := json.Unmarshal([]byte(out), &got); err != nil {
						t.Fatalf("%s printed %q: %v", r.name, out, err)
					}
					if got.ResponseID != c.ResponseID || got.Identifier != c.Identifier || !slices.Equal(got.Names, c.Names) || got.Exp != c.Expires.Unix() {
						t.Errorf("%s read %+v, expected %+v", r.name, got, c)
					}
				})
			}

			t.Run("refusals", func(t *testing.T) {
				tok, err := keys.Mint(claims[1])
				if err != nil {
					t.Fatal(err)
				}
				dot := strings.LastIndexByte(tok, '.')
				// The payload's first character changed ("eyJ" is `{"`): it
				// still decodes, to other bytes.
				payload := strings.IndexByte(tok[5:], '.') + 6
				if !strings.HasPrefix(tok[payload:], "eyJ") {
					t.Fatalf("%s: expected the payload to start with eyJ", tok)
				}
				tampered := tok[:payload] + "f" + tok[payload+1:]
				_, otherHex := newKey(t)
				retired := parseKeys(t, otherHex)
				for _, tc := range []struct {
					name, key, tok string
					now            time.Time
					want           string
					goErr          error
				}{
					{"tampered", keyHex, tampered, now, "signature does not match", token.ErrBadSignature},
					{"signature of another key", keyHex, tok[:dot] + "." + strings.Repeat("A", 43), now, "signature does not match", token.ErrBadSignature},
					{"retired key", otherHex, tok, now, "unknown key", token.ErrUnknownKey},
					{"expired", keyHex, tok, claims[1].Expires, "expired", token.ErrExpired},
				} {
					t.Run(tc.name, func(t *testing.T) {
						out, errOut, ok := r.run(t, "verify", "--key", tc.key, "--now", strconv.FormatInt(tc.now.Unix(), 10), tc.tok)
						if ok || !strings.Contains(errOut, tc.want) {
							t.Errorf("%s verify: ok %v, %q %q; expected it refused: %s", r.name, ok, out, errOut, tc.want)
						}
						k := keys
						if tc.key == otherHex {
							k = retired
						}
						if _, err := k.Verify(tc.tok, tc.now); !errors.Is(err, tc.goErr) {
							t.Errorf("Go: %v, expected %v", err, tc.goErr)
						}
					})
				}
			})
		})
	}
}
