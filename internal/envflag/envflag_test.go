package envflag

import (
	"flag"
	"io"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	env := map[string]string{"APP_LISTEN_ADDR": ":1", "APP_COUNT": "7", "APP_BAD": "x"}
	getenv := func(k string) string { return env[k] }
	newFS := func() (*flag.FlagSet, *string, *int) {
		fs := flag.NewFlagSet("app", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		return fs, fs.String("listen-addr", "def", ""), fs.Int("count", 0, "")
	}

	fs, addr, count := newFS()
	if err := Parse(fs, []string{"-listen-addr", ":2"}, "APP_", getenv); err != nil {
		t.Fatal(err)
	}
	if *addr != ":2" || *count != 7 {
		t.Errorf("addr %q count %d: want the flag over the environment, the environment over the default", *addr, *count)
	}

	fs, _, _ = newFS()
	fs.Int("bad", 0, "")
	if err := Parse(fs, nil, "APP_", getenv); err == nil || !strings.Contains(err.Error(), "APP_BAD") {
		t.Errorf("err = %v, want it to name APP_BAD", err)
	}

	fs, _, _ = newFS()
	if err := Parse(fs, []string{"serve"}, "APP_", getenv); err == nil || !strings.Contains(err.Error(), "serve") {
		t.Errorf("err = %v, want stray arguments refused", err)
	}
}
