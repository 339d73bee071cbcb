// Package versions reads which versions of the test apps' packages are
// installed: Python distributions from the venv, npm packages from the
// TypeScript app's lockfile. The matrix (e2e) and the captures
// (e2e/capture) record them, each in its own format.
package versions

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Package is a package and its version; Version is "" when it is not
// installed (or not in the lockfile).
type Package struct {
	Name, Version string
}

// Python asks the interpreter python for its own version and for the
// installed version of each of names.
func Python(ctx context.Context, python string, names []string) (interpreter string, pkgs []Package, err error) {
	// One line each: the interpreter's version, then one per name, empty
	// when it is not installed.
	const script = `import importlib.metadata as m, sys
print(sys.version.split()[0])
for name in sys.argv[1:]:
    try:
        print(m.version(name))
    except m.PackageNotFoundError:
        print("")`
	out, err := exec.CommandContext(ctx, python, append([]string{"-c", script}, names...)...).Output()
	if err != nil {
		return "", nil, fmt.Errorf("package versions: %w", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(names)+1 {
		return "", nil, fmt.Errorf("package versions: %d lines for %d packages", len(lines), len(names))
	}
	for i, name := range names {
		pkgs = append(pkgs, Package{name, lines[i+1]})
	}
	return lines[0], pkgs, nil
}

// NPM reads the version of each of names from the package-lock.json in
// dir, which `npm ci` installs exactly.
func NPM(dir string, names []string) ([]Package, error) {
	body, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return nil, err
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(body, &lock); err != nil {
		return nil, fmt.Errorf("%s/package-lock.json: %w", dir, err)
	}
	pkgs := make([]Package, len(names))
	for i, name := range names {
		pkgs[i] = Package{name, lock.Packages["node_modules/"+name].Version}
	}
	return pkgs, nil
}
