package deploy

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

// buildLine is the one way the Dockerfile builds a binary: static (no cgo), without local paths,
// without symbol tables.
var buildLine = regexp.MustCompile(`^CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/(\w+) \./cmd/(\w+)$`)

// dockerfileInstructions returns the Dockerfile's instructions, continuation lines joined.
func dockerfileInstructions(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		out = append(out, strings.Join(strings.Fields(cur.String()), " "))
		cur.Reset()
	}
	return out
}

// goBuilds returns the `go build` commands of the Dockerfile's RUN lines, by output name.
func goBuilds(t *testing.T) map[string]string {
	t.Helper()
	builds := map[string]string{}
	for _, ins := range dockerfileInstructions(t) {
		if !strings.HasPrefix(ins, "RUN ") {
			continue
		}
		for _, cmd := range strings.Split(ins, "&&") {
			cmd = strings.TrimSpace(cmd)
			// Drop RUN and its --mount options.
			for _, f := range strings.Fields(cmd) {
				if f == "RUN" || strings.HasPrefix(f, "--mount=") {
					cmd = strings.TrimSpace(strings.TrimPrefix(cmd, f))
					continue
				}
				break
			}
			if !strings.Contains(cmd, "go build") {
				continue
			}
			m := buildLine.FindStringSubmatch(cmd)
			if m == nil {
				t.Errorf("Dockerfile builds with %q; want `CGO_ENABLED=0 go build -trimpath -ldflags \"-s -w\" -o /out/NAME ./cmd/NAME`", cmd)
				continue
			}
			if m[1] != m[2] {
				t.Errorf("%q: the binary is named after another command", cmd)
			}
			builds[m[1]] = cmd
		}
	}
	return builds
}

func TestDockerfile(t *testing.T) {
	builds := goBuilds(t)
	if _, ok := builds["proxy"]; !ok {
		t.Error("the Dockerfile does not build ./cmd/proxy")
	}
	if _, ok := builds["demo"]; !ok {
		t.Error("the Dockerfile does not build ./cmd/demo")
	}
	var froms, users, entrypoints []string
	for _, ins := range dockerfileInstructions(t) {
		switch f := strings.Fields(ins); f[0] {
		case "FROM":
			froms = append(froms, strings.Join(f[1:], " "))
		case "USER":
			users = append(users, f[1])
		case "ENTRYPOINT":
			entrypoints = append(entrypoints, strings.Join(f[1:], " "))
		}
	}
	want := []string{
		"golang:${GO_VERSION}-bookworm AS build",
		"gcr.io/distroless/static-debian12:nonroot AS demo",
		"gcr.io/distroless/static-debian12:nonroot AS proxy", // last: the default target
	}
	if !slices.Equal(froms, want) {
		t.Errorf("stages %q, want %q", froms, want)
	}
	if !slices.Equal(users, []string{"nonroot:nonroot", "nonroot:nonroot"}) {
		t.Errorf("USER %q: both images run as nonroot", users)
	}
	if !slices.Equal(entrypoints, []string{`["/demo"]`, `["/proxy"]`}) {
		t.Errorf("ENTRYPOINT %q", entrypoints)
	}
}

// TestDockerfileBuild runs the Dockerfile's `go build` lines as they are written (from the
// repository root, as the image's /src) and checks what they promise: static, stripped, trimmed.
// It also checks that every FEEDBACK_PROXY_* and DEMO_* variable in deploy/ names a flag.
func TestDockerfileBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	out := t.TempDir()
	for name, cmd := range goBuilds(t) {
		// The line itself, word for word; only the output goes to a temporary directory.
		f := shellFields(cmd)
		env, args := f[0], f[2:] // CGO_ENABLED=0 go ...
		for i, a := range args {
			if a == "/out/"+name {
				args[i] = filepath.Join(out, name)
			}
		}
		c := exec.Command("go", args...)
		c.Dir = ".."
		c.Env = append(os.Environ(), env)
		if b, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, b)
		}
		checkBinary(t, filepath.Join(out, name))
	}

	envs := deployEnvNames(t)
	for bin, prefix := range map[string]string{"proxy": "FEEDBACK_PROXY_", "demo": "DEMO_"} {
		var help bytes.Buffer
		c := exec.Command(filepath.Join(out, bin), "--help")
		c.Stdout, c.Stderr = &help, &help
		if err := c.Run(); err != nil {
			t.Fatalf("%s --help: %v\n%s", bin, err, &help)
		}
		for _, env := range envs {
			name, ok := strings.CutPrefix(env, prefix)
			if !ok {
				continue
			}
			flag := "-" + strings.ToLower(strings.ReplaceAll(name, "_", "-"))
			if !regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(flag) + `\b`).Match(help.Bytes()) {
				t.Errorf("deploy/ sets %s, but %s has no flag %s", env, bin, flag)
			}
		}
	}
}

// shellFields splits a command line into words as a shell would, for the
// double quotes the Dockerfile uses.
func shellFields(s string) []string {
	var words []string
	var w strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				words = append(words, w.String())
				w.Reset()
			}
			inWord = false
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

func checkBinary(t *testing.T, path string) {
	t.Helper()
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	// -ldflags is not recorded with -trimpath (it may hold paths); its effect is checked below.
	for k, v := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true"} {
		if settings[k] != v {
			t.Errorf("%s: build setting %s=%q, want %q", filepath.Base(path), k, settings[k], v)
		}
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked; distroless/static has no loader", filepath.Base(path))
		}
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s has a symbol table; -s should strip it", filepath.Base(path))
	}
	for _, s := range f.Sections {
		if strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			t.Errorf("%s has DWARF (%s); -w should drop it", filepath.Base(path), s.Name)
			break
		}
	}
	if _, err := f.DynamicSymbols(); !errors.Is(err, elf.ErrNoSymbols) {
		t.Errorf("%s has dynamic symbols (%v)", filepath.Base(path), err)
	}
}

// deployEnvNames lists the FEEDBACK_PROXY_* and DEMO_* variables set anywhere in deploy/.
func deployEnvNames(t *testing.T) []string {
	t.Helper()
	re := regexp.MustCompile(`\b(?:FEEDBACK_PROXY|DEMO)_[A-Z_]+\b`)
	var names []string
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllString(string(b), -1) {
			if !slices.Contains(names, m) {
				names = append(names, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no FEEDBACK_PROXY_* or DEMO_* variable in deploy/")
	}
	return names
}

// phoenixVersion is the Phoenix the proxy is tested against: the pin in scripts/requirements.txt.
func phoenixVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../scripts/requirements.txt")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^arize-phoenix==(\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no arize-phoenix==VERSION in scripts/requirements.txt")
	}
	return string(m[1])
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []map[string]any
	dec := yaml.NewDecoder(f)
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, d)
	}
}

// at walks a decoded YAML value by keys and list indexes.
func at(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%v: not a mapping at %q", path, k)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("%v: no item %d", path, k)
			}
			v = l[k]
		}
	}
	return v
}

func TestCompose(t *testing.T) {
	docs := yamlDocs(t, "docker-compose.yml")
	if len(docs) != 1 {
		t.Fatalf("%d documents", len(docs))
	}
	c := docs[0]
	if got, want := at(t, c, "services", "phoenix", "image"), "arizephoenix/phoenix:version-"+phoenixVersion(t); got != want {
		t.Errorf("Phoenix image %v, want %s (scripts/requirements.txt)", got, want)
	}
	for _, svc := range []string{"proxy", "demo"} {
		if got := at(t, c, "services", svc, "build", "dockerfile"); got != "deploy/Dockerfile" {
			t.Errorf("%s builds from %v", svc, got)
		}
		if got := at(t, c, "services", svc, "build", "target"); got != svc {
			t.Errorf("%s builds target %v", svc, got)
		}
	}
	for _, svc := range []string{"phoenix", "proxy"} {
		for _, p := range at(t, c, "services", svc, "ports").([]any) {
			if !strings.HasPrefix(p.(string), "127.0.0.1:") {
				t.Errorf("%s publishes %v beyond loopback", svc, p)
			}
		}
	}
	env := at(t, c, "services", "demo", "environment").(map[string]any)
	if env["OTEL_EXPORTER_OTLP_ENDPOINT"] != "http://proxy:4318" || env["DEMO_FEEDBACK_URL"] != "http://proxy:8080" {
		t.Errorf("demo environment %v: spans and feedback go to the proxy", env)
	}
	if got := at(t, c, "services", "proxy", "environment", "PHOENIX_COLLECTOR_ENDPOINT"); got != "http://phoenix:6006" {
		t.Errorf("the proxy exports to %v", got)
	}
}

func TestKubernetes(t *testing.T) {
	kinds := map[string]map[string]any{}
	k := yamlDocs(t, "kubernetes/kustomization.yaml")[0]
	for _, r := range at(t, k, "resources").([]any) {
		for _, d := range yamlDocs(t, filepath.Join("kubernetes", r.(string))) {
			kinds[d["kind"].(string)+"/"+at(t, d, "metadata", "name").(string)] = d
		}
	}
	phoenix, job, svc := kinds["Deployment/phoenix"], kinds["Job/feedback-demo"], kinds["Service/phoenix"]
	if phoenix == nil || job == nil || svc == nil {
		t.Fatalf("want Deployment/phoenix, Service/phoenix and Job/feedback-demo; got %v", slices.Sorted(func(yield func(string) bool) {
			for k := range kinds {
				if !yield(k) {
					return
				}
			}
		}))
	}
	if got, want := at(t, phoenix, "spec", "template", "spec", "containers", 0, "image"), "arizephoenix/phoenix:version-"+phoenixVersion(t)+"-nonroot"; got != want {
		t.Errorf("Phoenix image %v, want %s", got, want)
	}
	if got := at(t, svc, "spec", "ports", 0, "port"); got != 6006 {
		t.Errorf("Service phoenix port %v", got)
	}

	pod := at(t, job, "spec", "template", "spec")
	sidecar := at(t, pod, "initContainers", 0).(map[string]any)
	if sidecar["name"] != "feedback-proxy" || sidecar["restartPolicy"] != "Always" {
		t.Errorf("the proxy should be a native sidecar: %v", sidecar)
	}
	env := map[string]string{}
	for _, e := range sidecar["env"].([]any) {
		m := e.(map[string]any)
		if v, ok := m["value"].(string); ok {
			env[m["name"].(string)] = v
		}
	}
	// GOMEMLIMIT is a soft limit for the GC: it must sit below the
	// container's hard one, or the kernel kills the proxy first.
	if soft, hard := mebibytes(t, env["GOMEMLIMIT"]), mebibytes(t, at(t, sidecar, "resources", "limits", "memory").(string)); soft >= hard || soft < hard/2 {
		t.Errorf("GOMEMLIMIT %q against limits.memory %v: want it below, and not far below", env["GOMEMLIMIT"], hard)
	}
	if env["FEEDBACK_PROXY_ADMIN_ADDR"] != ":8888" || at(t, sidecar, "ports", 0, "containerPort") != 8888 || at(t, sidecar, "ports", 0, "name") != "admin" {
		t.Errorf("the admin listener (%q) and the probed port (%v) disagree", env["FEEDBACK_PROXY_ADMIN_ADDR"], sidecar["ports"])
	}
	for probe, path := range map[string]string{"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if got := at(t, sidecar, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path %v, want %s", probe, got, path)
		}
		if got := at(t, sidecar, probe, "httpGet", "port"); got != "admin" {
			t.Errorf("%s port %v, want the admin listener", probe, got)
		}
	}
	app := at(t, pod, "containers", 0).(map[string]any)
	for _, e := range app["env"].([]any) {
		m := e.(map[string]any)
		if m["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT" && m["value"] != "http://localhost:4318" {
			t.Errorf("the app exports to %v, not its sidecar", m["value"])
		}
	}
}

// mebibytes reads a size as Kubernetes ("256Mi") or Go's GOMEMLIMIT
// ("200MiB") writes it.
func mebibytes(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSuffix(s, "B"), "Mi"))
	if err != nil || !strings.Contains(s, "Mi") {
		t.Fatalf("size %q: want a number of MiB", s)
	}
	return n
}
