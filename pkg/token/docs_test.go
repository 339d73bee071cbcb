package token_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocsExample checks that docs/tokens.md shows the worked example that
// ExampleKeys_Mint mints, and that its recipes are the code the end-to-end
// suite runs (e2e/apps/mint_token.py and .ts, checked against this package
// by e2e/token_recipe_test.go).
func TestDocsExample(t *testing.T) {
	doc := read(t, "../../docs/tokens.md")
	for _, s := range []string{exampleKeyHex, examplePayload, exampleToken, exampleToken[:strings.LastIndexByte(exampleToken, '.')]} {
		if !strings.Contains(doc, s) {
			t.Errorf("docs/tokens.md does not show %s", s)
		}
	}

	blocks := regexp.MustCompile("(?s)```(python|typescript)\n(.*?)```").FindAllStringSubmatch(doc, -1)
	scripts := map[string]string{
		"python":     read(t, "../../e2e/apps/mint_token.py"),
		"typescript": read(t, "../../e2e/apps/mint_token.ts"),
	}
	checked := map[string]bool{}
	for _, b := range blocks {
		lang, code := b[1], b[2]
		if !strings.Contains(code, "def mint(") && !strings.Contains(code, "function mint(") {
			continue // a usage line
		}
		// The page's imports are the recipe's own; the script imports more.
		var body []string
		for _, line := range strings.Split(code, "\n") {
			if len(body) == 0 && (line == "" || strings.HasPrefix(line, "import ")) {
				continue
			}
			body = append(body, line)
		}
		if !strings.Contains(scripts[lang], strings.Join(body, "\n")) {
			t.Errorf("the %s recipe of docs/tokens.md is not the code of e2e/apps/mint_token's: copy it over", lang)
		}
		checked[lang] = true
	}
	if len(checked) != 2 {
		t.Errorf("checked the recipes of %v in docs/tokens.md, expected python and typescript", checked)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
