//go:build e2e

package faults

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	phoenixURL string
	python     string
	proxyBin   string
	repoRoot   string
	long       = os.Getenv("FAULTS_LONG") == "1"
)

func TestMain(m *testing.M) {
	phoenixURL = strings.TrimRight(os.Getenv("E2E_PHOENIX_URL"), "/")
	python = os.Getenv("E2E_PYTHON")
	if phoenixURL == "" || python == "" {
		fmt.Fprintln(os.Stderr, "faults: E2E_PHOENIX_URL and E2E_PYTHON are not set; run `make test` or scripts/e2e.sh ./faults/")
		os.Exit(1)
	}
	wd, _ := os.Getwd()
	repoRoot = filepath.Dir(wd)
	dir, err := os.MkdirTemp("", "faults-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	proxyBin = filepath.Join(dir, "proxy")
	build := exec.Command("go", "build", "-o", proxyBin, "./cmd/proxy")
	build.Dir = repoRoot
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "faults: cannot build the proxy:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func runTag() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}

// proxyProc is the proxy binary, run as the user would run it.
type proxyProc struct {
	t                                   *testing.T
	args                                []string
	grpcAddr, httpAddr, feedback, admin string
	dataDir                             string
	cmd                                 *exec.Cmd
	log                                 *os.File
	mu                                  sync.Mutex
}

func newProxy(t *testing.T, upstream string, extra ...string) *proxyProc {
	p := &proxyProc{
		t: t, grpcAddr: freePort(t), httpAddr: freePort(t), feedback: freePort(t), admin: freePort(t),
		dataDir: t.TempDir(),
	}
	p.args = append([]string{
		"-otlp-grpc-addr", p.grpcAddr, "-otlp-http-addr", p.httpAddr,
		"-feedback-addr", p.feedback, "-admin-addr", p.admin,
		"-phoenix-otlp-endpoint", upstream + "/v1/traces", "-phoenix-url", phoenixURL,
		"-data-dir", p.dataDir, "-log-level", "debug",
	}, extra...)
	var err error
	if p.log, err = os.Create(filepath.Join(t.TempDir(), "proxy.log")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			b, _ := os.ReadFile(p.log.Name())
			lines := strings.Split(string(b), "\n")
			if len(lines) > 60 {
				lines = lines[len(lines)-60:]
			}
			t.Logf("last proxy log lines:\n%s", strings.Join(lines, "\n"))
		}
		p.log.Close()
	})
	p.start()
	return p
}

func (p *proxyProc) start() {
	p.t.Helper()
	p.mu.Lock()
	p.cmd = exec.Command(proxyBin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		p.mu.Unlock()
		p.t.Fatal(err)
	}
	p.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + p.admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatal("the proxy did not become ready within 15s")
}

// kill SIGKILLs the proxy: no shutdown, no flush.
func (p *proxyProc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}

// stop sends SIGTERM and waits.
func (p *proxyProc) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}

// metric reads one sample from the proxy's /metrics (the sum over labels
// matching the given label filter, e.g. `outcome="annotated"`).
func (p *proxyProc) metric(name, labels string) float64 {
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? ([0-9.e+-]+)$`)
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := re.FindStringSubmatch(sc.Text())
		if m == nil || (labels != "" && !strings.Contains(m[1], labels)) {
			continue
		}
		v, _ := strconv.ParseFloat(m[2], 64)
		sum += v
	}
	return sum
}

// load runs faults/load.py in the background; wait returns its summary.
type load struct {
	cmd *exec.Cmd
	out strings.Builder
	err strings.Builder
}

type loadSummary struct {
	Traces int `json:"traces"`
	Spans  int `json:"spans"`
}

func startLoad(t *testing.T, exporter, endpoint, project, run string, rate, seconds float64) *load {
	t.Helper()
	l := &load{}
	l.cmd = exec.Command(python, filepath.Join(repoRoot, "faults", "load.py"),
		"--exporter", exporter, "--endpoint", endpoint, "--project", project, "--run", run,
		"--rate", strconv.FormatFloat(rate, 'f', -1, 64), "--seconds", strconv.FormatFloat(seconds, 'f', -1, 64))
	l.cmd.Stdout, l.cmd.Stderr = &l.out, &l.err
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *load) wait(t *testing.T) loadSummary {
	t.Helper()
	if err := l.cmd.Wait(); err != nil {
		t.Fatalf("load.py: %v\n%s", err, l.err.String())
	}
	var s loadSummary
	if err := json.Unmarshal([]byte(strings.TrimSpace(l.out.String())), &s); err != nil {
		t.Fatalf("load.py printed %q: %v\n%s", l.out.String(), err, l.err.String())
	}
	if strings.Contains(l.err.String(), "Failed to export") || strings.Contains(l.err.String(), "dropped") {
		t.Logf("load.py reported export trouble:\n%s", tail(l.err.String(), 20))
	}
	return s
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// phoenixSpanIDs returns the distinct span ids Phoenix holds in a project,
// following its cursor pages.
func phoenixSpanIDs(t *testing.T, project string) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	cursor := ""
	for range 10000 {
		q := url.Values{"limit": {"1000"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		resp, err := http.Get(phoenixURL + "/v1/projects/" + url.PathEscape(project) + "/spans?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return ids
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("Phoenix spans: %d %s", resp.StatusCode, body)
		}
		var page struct {
			Data []struct {
				Context struct {
					SpanID string `json:"span_id"`
				} `json:"context"`
			} `json:"data"`
			NextCursor *string `json:"next_cursor"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		for _, s := range page.Data {
			ids[s.Context.SpanID] = true
		}
		if page.NextCursor == nil || *page.NextCursor == "" {
			return ids
		}
		cursor = *page.NextCursor
	}
	return ids
}

// waitSpans polls Phoenix until it holds want spans in project, or timeout.
func waitSpans(t *testing.T, project string, want int, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	got := 0
	for time.Now().Before(deadline) {
		if got = len(phoenixSpanIDs(t, project)); got >= want {
			return got
		}
		time.Sleep(time.Second)
	}
	return got
}

func phoenixCtl(t *testing.T, verb string) {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), filepath.Join(repoRoot, "scripts", "phoenix.sh"), verb)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("phoenix.sh %s: %v\n%s", verb, err, out)
	}
}

// report prints the counts every scenario ends with, in one greppable line.
func report(t *testing.T, scenario string, sent, delivered int) {
	t.Helper()
	lost := sent - delivered
	if lost < 0 {
		lost = 0
	}
	t.Logf("FAULTS %s: sent=%d delivered=%d lost=%d", scenario, sent, delivered, lost)
	if lost > 0 {
		t.Errorf("%s: %d of %d lost", scenario, lost, sent)
	}
}
