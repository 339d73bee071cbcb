//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/proxy"
)

// browserDir is the Node script that drives the demo page in Chromium;
// scripts/browser.sh installs its node_modules (npm ci) and Debian's
// chromium.
const browserDir = "browser"

// widgetScreenshot is where E2E_SCREENSHOT=1 saves the page for the README.
const widgetScreenshot = "../docs/images/widget-demo.png"

// TestBrowserWidget is a user on the demo's chat page (`demo web`) in
// headless Chromium: the page's backend asks the LLM (traced into the
// proxy) and mints a per-response token; the page, on its own origin, loads
// /widget.js from the proxy and votes with that token across origins. The
// user votes thumbs up, Phoenix shows it, the user changes to thumbs down,
// and Phoenix holds exactly one annotation of that user on the answer's LLM
// span: thumbs-down, score 0. A vote on a second answer, still on its way
// when the page goes away, arrives by navigator.sendBeacon (the token in
// the body) and lands too.
func TestBrowserWidget(t *testing.T) {
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "chromium"
	}
	chromiumPath, err := exec.LookPath(chromium)
	if err != nil {
		t.Fatalf("%v: the browser test drives Debian's chromium; run scripts/e2e.sh (or make e2e), which runs scripts/browser.sh install", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("%v: the browser test needs Node 20+", err)
	}
	dir, err := filepath.Abs(browserDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		t.Fatalf("%v: playwright-core is not installed; run scripts/e2e.sh (or make e2e), which runs scripts/browser.sh install (npm ci)", err)
	}

	tmp := t.TempDir()
	keysFile := filepath.Join(tmp, "token-keys.txt")
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	if err := os.WriteFile(keysFile, []byte(hex.EncodeToString(secret)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The page's origin must be on the proxy's CORS list before the page
	// exists: its port is picked first.
	demoAddr := freeLoopbackAddr(t)
	origin := "http://" + demoAddr
	serverToken := "e2e-server-" + randomSuffix()
	p := startProxy(t, func(c *proxy.Config) {
		// The server token guards the API; the page has only its
		// per-response token.
		c.Feedback.Token = serverToken
		// The keys file as cmd/proxy's --token-keys-file reads it.
		c.TokenKeysFile = keysFile
		c.CORSAllowedOrigins = []string{origin}
	})
	feedbackURL := "http://" + p.Addrs().Feedback

	project := "e2e-browser-" + randomSuffix()
	demoBin := filepath.Join(tmp, "demo")
	build := exec.Command("go", "build", "-o", demoBin, "github.com/feedbackproxy/phoenix-feedback-proxy/cmd/demo")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/demo: %v\n%s", err, out)
	}
	demo := startDemoWeb(t, demoBin, []string{
		"web", "--addr", demoAddr, "--feedback-url", feedbackURL, "--token-keys-file", keysFile,
	}, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + p.Addrs().OTLPHTTP,
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"PHOENIX_PROJECT_NAME=" + project,
	})

	shot := filepath.Join(tmp, "widget-demo.png")
	if os.Getenv("E2E_SCREENSHOT") == "1" {
		shot, _ = filepath.Abs(widgetScreenshot)
	}
	phx := phoenixClient(t)
	var user string
	spans := map[string]feedbackSpan{} // by response id, once the proxy resolved it
	// The user's annotations on an answer's LLM span.
	userAnnotations := func(responseID string) (feedbackSpan, []phoenix.StoredSpanAnnotation) {
		span, ok := spans[responseID]
		if !ok {
			if span = lookupSpan(t, feedbackURL, serverToken, responseID); span.SpanID == "" {
				return span, nil
			}
			spans[responseID] = span
		}
		var mine []phoenix.StoredSpanAnnotation
		for _, a := range annotationsOn(t, phx, span.Project, span.SpanID) {
			if a.Name == feedback.DefaultName && a.Identifier == user {
				mine = append(mine, a)
			}
		}
		return span, mine
	}
	waitLabel := func(responseID, label string) {
		eventually(t, 60*time.Second, "the "+label+" annotation on "+responseID+" in Phoenix", func() (bool, string) {
			span, anns := userAnnotations(responseID)
			return len(anns) == 1 && labelOf(anns[0]) == label, describeUserAnnotations(span, anns)
		})
	}

	var responseID, leftID, leftThumbs string
	drive := runNode(t, node, dir, "demo-page.mjs", "--url", demo+"/", "--screenshot", shot, "--chromium", chromiumPath, "--pause")
	for ev := range drive.events {
		switch ev.Event {
		case "answered":
			responseID, user = ev.ResponseID, ev.Identifier
			t.Logf("answer %s for user %s", responseID, user)
		case "voted":
			t.Logf("the page recorded thumbs %s", ev.Thumbs)
			if ev.Thumbs == "up" {
				// Phoenix has the first vote before the user changes it: the
				// change replaces an annotation, not a pending feedback.
				waitLabel(responseID, "thumbs-up")
				drive.resume()
			}
		case "refused":
			t.Logf("the widget refused a tampered token: %s", ev.Message)
		case "left":
			leftID, leftThumbs = ev.ResponseID, ev.Thumbs
			t.Logf("the page went away while voting thumbs %s on %s", leftThumbs, leftID)
		}
	}
	if err := drive.wait(); err != nil {
		t.Fatalf("demo-page.mjs: %v\n%s", err, drive.stderr())
	}
	if responseID == "" || user == "" || leftID == "" {
		t.Fatalf("demo-page.mjs did not report its steps (answer %q, user %q, left %q)\n%s", responseID, user, leftID, drive.stderr())
	}

	waitLabel(responseID, "thumbs-down")
	span, anns := userAnnotations(responseID)
	if len(anns) != 1 {
		t.Fatalf("want one %q annotation of %s, got %s", feedback.DefaultName, user, describeUserAnnotations(span, anns))
	}
	a := anns[0]
	if labelOf(a) != "thumbs-down" || a.Result.Score == nil || *a.Result.Score != 0 || a.AnnotatorKind != "HUMAN" {
		t.Errorf("want thumbs-down, score 0, HUMAN; got %s", describeUserAnnotations(span, anns))
	}
	if !strings.HasPrefix(span.Name, "chat ") {
		t.Errorf("the vote is on span %q, want the LLM span (chat <model>)", span.Name)
	}
	// The beacon's vote, its token in a text/plain body, lands too.
	waitLabel(leftID, "thumbs-"+leftThumbs)

	info, err := os.Stat(shot)
	if err != nil || info.Size() < 10<<10 {
		t.Errorf("screenshot %s: %v, %d bytes", shot, err, sizeOf(info))
	}
	png, _ := os.ReadFile(shot)
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("screenshot %s is not a PNG", shot)
	}
	t.Logf("screenshot: %s (%d KB)", shot, sizeOf(info)>>10)
}

func sizeOf(fi os.FileInfo) int64 {
	if fi == nil {
		return 0
	}
	return fi.Size()
}

func labelOf(a phoenix.StoredSpanAnnotation) string {
	if a.Result.Label == nil {
		return ""
	}
	return *a.Result.Label
}

func describeUserAnnotations(span feedbackSpan, anns []phoenix.StoredSpanAnnotation) string {
	if span.SpanID == "" {
		return "the proxy has not resolved the span yet"
	}
	var parts []string
	for _, a := range anns {
		score := "none"
		if a.Result.Score != nil {
			score = fmt.Sprint(*a.Result.Score)
		}
		parts = append(parts, fmt.Sprintf("{%s by %s: label %q, score %s}", a.Name, a.Identifier, labelOf(a), score))
	}
	return fmt.Sprintf("%d on span %s (%s): %s", len(anns), span.SpanID, span.Name, strings.Join(parts, ", "))
}

// freeLoopbackAddr returns a loopback address whose port was free a moment
// ago.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

type feedbackSpan struct {
	SpanID  string `json:"span_id"`
	Project string `json:"project"`
	Name    string `json:"name"`
}

// lookupSpan asks the proxy (GET /feedback/{id}, with the server token)
// which span it resolved the response to; zero while it has not.
func lookupSpan(t *testing.T, feedbackURL, serverToken, responseID string) feedbackSpan {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, feedbackURL+"/feedback/"+responseID, nil)
	req.Header.Set("Authorization", "Bearer "+serverToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Span *feedbackSpan `json:"span"`
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusNotFound {
		return feedbackSpan{}
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &st) != nil {
		t.Fatalf("GET /feedback/%s answered %d %s", responseID, resp.StatusCode, body)
	}
	if st.Span == nil {
		return feedbackSpan{}
	}
	return *st.Span
}

// startDemoWeb runs `demo web` with env (beside the caller's, less what
// would point it elsewhere) and returns the page's URL once it serves.
func startDemoWeb(t *testing.T, bin string, args, env []string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(browserEnv(), env...)
	// SIGINT, as Ctrl-C: the demo flushes its spans and stops.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	url := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if u, ok := strings.CutPrefix(line, "Demo page: "); ok {
				url <- strings.TrimRight(u, "/")
			}
		}
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cancel()
		// A clean exit after the interrupt is reported as the context's end.
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("demo web: %v", err)
		}
	})
	select {
	case u := <-url:
		return u
	case err := <-done:
		done <- err
		t.Fatalf("demo web exited before serving: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("demo web did not print its page's URL within 30 s")
	}
	return ""
}

// browserEnv is the caller's environment without what would send the
// demo's spans, LLM calls or settings elsewhere.
func browserEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return slices.ContainsFunc([]string{"OTEL_", "OPENAI_", "DEMO_", "FEEDBACK_PROXY_", "PHOENIX_"},
			func(p string) bool { return strings.HasPrefix(kv, p) })
	})
}

// nodeEvent is one line of demo-page.mjs's stdout.
type nodeEvent struct {
	Event      string `json:"event"`
	ResponseID string `json:"response_id"`
	Identifier string `json:"identifier"`
	Thumbs     string `json:"thumbs"`
	Message    string `json:"message"`
}

type nodeRun struct {
	events chan nodeEvent
	stdin  io.WriteCloser
	cmd    *exec.Cmd
	mu     sync.Mutex
	errOut bytes.Buffer
	done   chan error
}

func (n *nodeRun) Write(b []byte) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.errOut.Write(b)
}

func (n *nodeRun) stderr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.errOut.String()
}

func (n *nodeRun) resume() { _, _ = io.WriteString(n.stdin, "next\n") }

func (n *nodeRun) wait() error { return <-n.done }

// runNode runs a script of e2e/browser; its JSON lines arrive on events,
// which closes when it exits.
func runNode(t *testing.T, node, dir string, args ...string) *nodeRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	n := &nodeRun{events: make(chan nodeEvent, 16), done: make(chan error, 1)}
	n.cmd = exec.CommandContext(ctx, node, args...)
	n.cmd.Dir = dir
	n.cmd.Env = browserEnv()
	n.cmd.Stderr = n
	stdout, err := n.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if n.stdin, err = n.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(n.events)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev nodeEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				fmt.Fprintf(n, "(stdout) %s\n", sc.Text())
				continue
			}
			n.events <- ev
		}
		n.stdin.Close()
		n.done <- n.cmd.Wait()
	}()
	return n
}
