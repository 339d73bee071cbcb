package deploy

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
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
	for name, svc := range at(t, c, "services").(map[string]any) {
		ports, _ := svc.(map[string]any)["ports"].([]any)
		for _, p := range ports {
			if !strings.HasPrefix(p.(string), "127.0.0.1:") {
				t.Errorf("%s publishes %v beyond loopback", name, p)
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

	// The replicas profile: a second proxy sharing the index with the first on Valkey. Outside the
	// profile the proxy has no shared index unless told.
	if got := at(t, c, "services", "proxy", "environment", "FEEDBACK_PROXY_REDIS_URL"); got != "${FEEDBACK_PROXY_REDIS_URL:-}" {
		t.Errorf("proxy's FEEDBACK_PROXY_REDIS_URL is %v; want it empty unless the variable is set", got)
	}
	for _, svc := range []string{"proxy-2", "valkey"} {
		if got := at(t, c, "services", svc, "profiles"); !reflect.DeepEqual(got, []any{"replicas"}) {
			t.Errorf("%s: profiles %v, want [replicas]", svc, got)
		}
	}
	for _, k := range []string{"build", "image"} {
		if a, b := at(t, c, "services", "proxy", k), at(t, c, "services", "proxy-2", k); !reflect.DeepEqual(a, b) {
			t.Errorf("proxy-2's %s %v differs from proxy's %v", k, b, a)
		}
	}
	if got := at(t, c, "services", "proxy-2", "environment", "FEEDBACK_PROXY_REDIS_URL"); got != "redis://valkey:6379/0" {
		t.Errorf("proxy-2's FEEDBACK_PROXY_REDIS_URL is %v, want the valkey service", got)
	}
	if got := at(t, c, "services", "proxy-2", "depends_on", "valkey", "condition"); got != "service_healthy" {
		t.Errorf("proxy-2 starts on valkey %v", got)
	}
	if !strings.HasPrefix(at(t, c, "services", "valkey", "image").(string), "valkey/valkey:") {
		t.Errorf("valkey image %v", at(t, c, "services", "valkey", "image"))
	}
	checkPersistent(t, "compose valkey", strs(t, at(t, c, "services", "valkey", "command")))
	if got := at(t, c, "services", "valkey", "volumes"); !reflect.DeepEqual(got, []any{"valkey-data:/data"}) {
		t.Errorf("valkey volumes %v: want its append-only file in a named volume", got)
	}
}

// strs converts a decoded YAML list of strings.
func strs(t *testing.T, v any) []string {
	t.Helper()
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("%v: not a list", v)
	}
	out := make([]string, len(l))
	for i, x := range l {
		if out[i], ok = x.(string); !ok {
			t.Fatalf("%v: item %d is not a string", v, i)
		}
	}
	return out
}

// checkPersistent checks that a Valkey command line keeps its data across a restart: the
// append-only file on, fsynced every second.
func checkPersistent(t *testing.T, what string, args []string) {
	t.Helper()
	for _, opt := range [][2]string{{"--appendonly", "yes"}, {"--appendfsync", "everysec"}} {
		if i := slices.Index(args, opt[0]); i < 0 || i+1 >= len(args) || args[i+1] != opt[1] {
			t.Errorf("%s: %q lacks %s %s", what, args, opt[0], opt[1])
		}
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
	checkSidecar(t, "Job/feedback-demo", pod)
	app := at(t, pod, "containers", 0).(map[string]any)
	for _, e := range app["env"].([]any) {
		m := e.(map[string]any)
		if m["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT" && m["value"] != "http://localhost:4318" {
			t.Errorf("the app exports to %v, not its sidecar", m["value"])
		}
	}

	checkReplicas(t, kinds)
}

// checkReplicas checks the app with several replicas and the Valkey its sidecars share the index
// on: each sidecar gets FEEDBACK_PROXY_REDIS_URL from the Secret, and that URL reaches the Valkey
// Service with the password Valkey requires.
func checkReplicas(t *testing.T, kinds map[string]map[string]any) {
	t.Helper()
	app, valkey, svc, secret := kinds["Deployment/llm-app"], kinds["Deployment/valkey"], kinds["Service/valkey"], kinds["Secret/valkey"]
	if app == nil || valkey == nil || svc == nil || secret == nil {
		t.Fatal("want Deployment/llm-app, Deployment/valkey, Service/valkey and Secret/valkey")
	}
	if n, _ := at(t, app, "spec", "replicas").(int); n < 2 {
		t.Errorf("llm-app has %v replicas; the example is of several", at(t, app, "spec", "replicas"))
	}
	pod := at(t, app, "spec", "template", "spec")
	sidecar := checkSidecar(t, "Deployment/llm-app", pod)
	data := at(t, secret, "stringData").(map[string]any)
	fromSecret := func(env any, name string) string {
		t.Helper()
		for _, e := range env.([]any) {
			m := e.(map[string]any)
			if m["name"] != name {
				continue
			}
			ref, ok := at(t, m, "valueFrom", "secretKeyRef").(map[string]any)
			if !ok || ref["name"] != "valkey" {
				t.Fatalf("%s is not taken from Secret/valkey: %v", name, m)
			}
			v, ok := data[ref["key"].(string)].(string)
			if !ok {
				t.Fatalf("%s: Secret/valkey has no key %v", name, ref["key"])
			}
			return v
		}
		t.Fatalf("no %s", name)
		return ""
	}
	raw := fromSecret(sidecar["env"], "FEEDBACK_PROXY_REDIS_URL")
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("Secret/valkey url %q: %v", raw, err)
	}
	password, _ := u.User.Password()
	if u.Scheme != "redis" || u.Hostname() != "valkey" || u.Port() != strconv.Itoa(at(t, svc, "spec", "ports", 0, "port").(int)) || u.Path != "/0" {
		t.Errorf("the sidecars' URL %q does not name Service/valkey and its port", raw)
	}

	vpod := at(t, valkey, "spec", "template", "spec")
	c := at(t, vpod, "containers", 0).(map[string]any)
	if !strings.HasPrefix(c["image"].(string), "valkey/valkey:") {
		t.Errorf("valkey image %v", c["image"])
	}
	if want := fromSecret(c["env"], "VALKEY_PASSWORD"); password != want || want == "" {
		t.Errorf("the sidecars' URL has password %q, Valkey is given %q", password, want)
	}
	args := strs(t, c["args"])
	if i := slices.Index(args, "--requirepass"); i < 0 || i+1 >= len(args) || args[i+1] != "$(VALKEY_PASSWORD)" {
		t.Errorf("valkey args %q: want --requirepass $(VALKEY_PASSWORD)", args)
	}
	checkPersistent(t, "Deployment/valkey", args)
	if at(t, valkey, "spec", "replicas") != 1 || at(t, valkey, "spec", "strategy", "type") != "Recreate" {
		t.Errorf("Valkey: want one replica, replaced (Recreate), not rolled")
	}
	if !reflect.DeepEqual(at(t, svc, "spec", "selector"), at(t, valkey, "spec", "template", "metadata", "labels")) {
		t.Errorf("Service/valkey selects %v, not the Valkey pods", at(t, svc, "spec", "selector"))
	}
	if at(t, svc, "spec", "ports", 0, "targetPort") != at(t, c, "ports", 0, "name") || at(t, c, "ports", 0, "containerPort") != 6379 {
		t.Errorf("Service/valkey targets %v; Valkey listens on %v", at(t, svc, "spec", "ports", 0, "targetPort"), c["ports"])
	}
}

// checkSidecar checks the proxy sidecar of a pod spec and returns it.
func checkSidecar(t *testing.T, what string, pod any) map[string]any {
	t.Helper()
	sidecar := at(t, pod, "initContainers", 0).(map[string]any)
	if sidecar["name"] != "feedback-proxy" || sidecar["restartPolicy"] != "Always" {
		t.Errorf("%s: the proxy should be a native sidecar: %v", what, sidecar)
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
		t.Errorf("%s: GOMEMLIMIT %q against limits.memory %v: want it below, and not far below", what, env["GOMEMLIMIT"], hard)
	}
	if env["FEEDBACK_PROXY_ADMIN_ADDR"] != ":8888" || at(t, sidecar, "ports", 0, "containerPort") != 8888 || at(t, sidecar, "ports", 0, "name") != "admin" {
		t.Errorf("%s: the admin listener (%q) and the probed port (%v) disagree", what, env["FEEDBACK_PROXY_ADMIN_ADDR"], sidecar["ports"])
	}
	for probe, path := range map[string]string{"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if got := at(t, sidecar, probe, "httpGet", "path"); got != path {
			t.Errorf("%s: %s path %v, want %s", what, probe, got, path)
		}
		if got := at(t, sidecar, probe, "httpGet", "port"); got != "admin" {
			t.Errorf("%s: %s port %v, want the admin listener", what, probe, got)
		}
	}
	return sidecar
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
