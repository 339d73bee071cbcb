//go:build e2e

package faults

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
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
	// The attack cases that mostly wait on the proxy's timeouts run in
	// parallel with each other (t.Parallel), more of them than there are
	// CPUs: unless -parallel was given, let them all run at once.
	flag.Parse()
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", "8")
	}
	raiseFileLimit()
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

// proxyProc is the proxy binary, run as the user would run it: with no
// flags but its addresses and Phoenix's (and what a scenario adds), so that
// it keeps its state in its default data directory. That directory is
// isolated per test: the proxy runs with XDG_STATE_HOME set to a temporary
// directory, and without any FEEDBACK_PROXY_* or PHOENIX_* variable of the
// environment the tests run in.
type proxyProc struct {
	t                                   *testing.T
	args                                []string
	env                                 []string
	grpcAddr, httpAddr, feedback, admin string
	// dataDir is the proxy's default data directory,
	// $XDG_STATE_HOME/phoenix-feedback-proxy, for the tests that inspect or
	// damage it.
	dataDir string
	cmd     *exec.Cmd
	log     *os.File
	// started: the proxy was up once, and the tests may hold its
	// addresses.
	started bool
	mu      sync.Mutex
}

// defaultDataDirName is the directory the proxy keeps its state in under
// $XDG_STATE_HOME when it is given no -data-dir.
const defaultDataDirName = "phoenix-feedback-proxy"

// newProxy starts the proxy in front of upstream (Phoenix's OTLP endpoint
// is upstream + /v1/traces, its REST API the test Phoenix) with no flags but
// the addresses; extra flags come last. FAULTS_PROXY_DEBUG=1 adds
// -log-level debug.
func newProxy(t *testing.T, upstream string, extra ...string) *proxyProc {
	return newProxyAt(t, upstream+"/v1/traces", phoenixURL, extra...)
}

// newProxyAt is newProxy with both Phoenix endpoints given.
func newProxyAt(t *testing.T, otlpEndpoint, restURL string, extra ...string) *proxyProc {
	t.Helper()
	p := newProxyProc(t, otlpEndpoint, restURL, extra...)
	p.start()
	return p
}

// newProxyProc prepares the proxy without starting it.
func newProxyProc(t *testing.T, otlpEndpoint, restURL string, extra ...string) *proxyProc {
	t.Helper()
	stateHome := t.TempDir()
	p := &proxyProc{
		t: t, grpcAddr: freePort(t), httpAddr: freePort(t), feedback: freePort(t), admin: freePort(t),
		dataDir: filepath.Join(stateHome, defaultDataDirName),
	}
	p.args = []string{
		"-otlp-grpc-addr", p.grpcAddr, "-otlp-http-addr", p.httpAddr,
		"-feedback-addr", p.feedback, "-admin-addr", p.admin,
		"-phoenix-otlp-endpoint", otlpEndpoint, "-phoenix-url", restURL,
	}
	if os.Getenv("FAULTS_PROXY_DEBUG") == "1" {
		p.args = append(p.args, "-log-level", "debug")
	}
	p.args = append(p.args, extra...)
	p.env = proxyEnv(stateHome)
	// FAULTS_LOG_DIR keeps the proxy's log after the test, one file a test.
	logDir := os.Getenv("FAULTS_LOG_DIR")
	if logDir == "" {
		logDir = t.TempDir()
	}
	var err error
	if p.log, err = os.Create(filepath.Join(logDir, strings.ReplaceAll(t.Name(), "/", "_")+".proxy.log")); err != nil {
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
	return p
}

// proxyEnv is the test's environment without what would configure the
// proxy behind the test's back (its own variables, Phoenix's, the Go
// runtime's memory settings, which would change the RSS measured), and
// with XDG_STATE_HOME set to stateHome.
func proxyEnv(stateHome string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "FEEDBACK_PROXY_"), strings.HasPrefix(name, "PHOENIX_"),
			name == "XDG_STATE_HOME", name == "GOGC", name == "GOMEMLIMIT", name == "GODEBUG":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "XDG_STATE_HOME="+stateHome)
}

// memoryOnly reports whether the scenario asked for -data-dir=-.
func (p *proxyProc) memoryOnly() bool {
	for i, a := range p.args {
		if a == "-data-dir=-" || a == "--data-dir=-" || ((a == "-data-dir" || a == "--data-dir") && i+1 < len(p.args) && p.args[i+1] == "-") {
			return true
		}
	}
	return false
}

func (p *proxyProc) start() {
	p.t.Helper()
	if err := p.startErr(); err != nil {
		p.t.Fatal(err)
	}
}

// startErr starts the proxy and waits until it is ready: /readyz answers
// 200 and, unless the scenario asked for memory only, its state file is in
// the default data directory.
func (p *proxyProc) startErr() error {
	for attempt := 1; ; attempt++ {
		err := p.startOnce()
		if err == nil {
			p.started = true
			return nil
		}
		// freePort's port may be taken between its check and the
		// proxy's bind (the suite's own clients use ephemeral ports
		// too): on a first start, nobody holds the addresses yet, so
		// new ones are picked.
		if p.started || attempt == 3 || !errors.Is(err, errPortTaken) {
			return err
		}
		p.mu.Lock()
		if p.cmd != nil {
			_ = p.cmd.Wait()
			p.cmd = nil
		}
		p.mu.Unlock()
		p.grpcAddr, p.httpAddr, p.feedback, p.admin = freePort(p.t), freePort(p.t), freePort(p.t), freePort(p.t)
		p.args[1], p.args[3], p.args[5], p.args[7] = p.grpcAddr, p.httpAddr, p.feedback, p.admin
	}
}

var errPortTaken = errors.New("the proxy exited while starting: a port was taken")

func (p *proxyProc) startOnce() error {
	p.mu.Lock()
	cmd := exec.Command(proxyBin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		return err
	}
	p.cmd = cmd
	p.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if processExited(cmd.Process.Pid) {
			if b, _ := os.ReadFile(p.log.Name()); strings.Contains(string(b), "address already in use") {
				return errPortTaken
			}
			return fmt.Errorf("the proxy exited while starting (see its log)")
		}
		if resp, err := http.Get("http://" + p.admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if p.memoryOnly() {
					return nil
				}
				if _, err := os.Stat(filepath.Join(p.dataDir, "state.db")); err != nil {
					return fmt.Errorf("the proxy is ready but does not keep its state in its default data directory: %v", err)
				}
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the proxy did not become ready within 15s")
}

// processExited reports whether pid is a zombie: exited, not yet waited for.
func processExited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) state ...: comm may hold spaces, the state follows the last ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z'
	}
	return false
}

// pid returns the running proxy's process id, 0 if none.
func (p *proxyProc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
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
