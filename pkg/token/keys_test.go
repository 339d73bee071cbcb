package token

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseKeys(t *testing.T) {
	a := secretA
	aID := idOf(a).String()
	// One key in every spelling the file accepts.
	for name, line := range map[string]string{
		"hex":                   hex.EncodeToString(a),
		"hex in capitals":       strings.ToUpper(hex.EncodeToString(a)),
		"base64":                base64.StdEncoding.EncodeToString(a),
		"base64 unpadded":       base64.RawStdEncoding.EncodeToString(a),
		"base64url":             base64.URLEncoding.EncodeToString(a),
		"base64url unpadded":    base64.RawURLEncoding.EncodeToString(a),
		"spaces around":         " \t" + hex.EncodeToString(a) + "  ",
		"after comments, CRLF":  "# keys for feedback tokens\r\n\r\n  # retired 2026-01: none\r\n" + hex.EncodeToString(a) + "\r\n",
		"no newline at the end": base64.StdEncoding.EncodeToString(a),
	} {
		t.Run(name, func(t *testing.T) {
			k, err := ParseKeys([]byte(line))
			if err != nil {
				t.Fatal(err)
			}
			if ids := k.KeyIDs(); len(ids) != 1 || ids[0] != aID {
				t.Errorf("KeyIDs = %q, expected [%s]", ids, aID)
			}
			if !bytes.Equal(k.keys[0].secret, a) {
				t.Errorf("decoded %x, expected %x", k.keys[0].secret, a)
			}
		})
	}

	// A 48-byte key whose base64 is all hex digits: read as hex, as
	// documented (and 32 bytes of hex from the same text).
	hexLooking := strings.Repeat("abcd", 16)
	k, err := ParseKeys([]byte(hexLooking))
	if err != nil || len(k.keys[0].secret) != 32 {
		t.Errorf("%s: %v, expected a 32-byte hex key", hexLooking, err)
	}

	k, err = ParseKeys([]byte(hex.EncodeToString(secretB) + "\n" + base64.StdEncoding.EncodeToString(secretA) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ids := k.KeyIDs(); len(ids) != 2 || ids[0] != idOf(secretB).String() {
		t.Errorf("KeyIDs = %q, expected B's first", ids)
	}
}

func TestParseKeysErrors(t *testing.T) {
	short := hex.EncodeToString(bytes.Repeat([]byte{7}, 31))
	for _, tc := range []struct{ name, file, want string }{
		{"empty", "", "no key"},
		{"comments only", "# no keys yet\n\n", "no key"},
		{"short hex", "# header\n" + short + "\n", "line 2: the key is 31 bytes, expected at least 32"},
		{"short base64", hex.EncodeToString(secretA) + "\n" + base64.StdEncoding.EncodeToString(secretA[:16]), "line 2: the key is 16 bytes"},
		{"odd hex", hex.EncodeToString(secretA) + "0", "line 1: expected hex or base64"},
		{"neither", "not a key: " + hex.EncodeToString(secretA), "line 1: expected hex or base64"},
		{"inline comment", hex.EncodeToString(secretA) + " # the new key", "line 1: expected hex or base64"},
		{"two keys on a line", hex.EncodeToString(secretA) + " " + hex.EncodeToString(secretB), "line 1: expected hex or base64"},
		{"mixed alphabets", strings.Replace(base64.RawURLEncoding.EncodeToString(secretB), "s", "+", 1) + "-_", "line 1: mixes the base64 alphabets"},
		{"stray bits", base64.RawStdEncoding.EncodeToString(secretA)[:42] + "p", "line 1: expected hex or base64"},
		{"carriage return inside", base64.StdEncoding.EncodeToString(secretA)[:20] + "\r" + base64.StdEncoding.EncodeToString(secretA)[20:], "line 1: expected hex or base64 on one line"},
		{"the same key twice", hex.EncodeToString(secretA) + "\n\n" + base64.StdEncoding.EncodeToString(secretA), "line 3: the same key as line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKeys([]byte(tc.file))
			if err == nil {
				t.Fatalf("ParseKeys = %v, expected an error", k.KeyIDs())
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseKeys = %q, expected it to say %q", err, tc.want)
			}
			// Errors go to logs: they must not hold key material.
			for _, s := range [][]byte{secretA, secretB} {
				for _, enc := range []string{hex.EncodeToString(s), base64.RawStdEncoding.EncodeToString(s)[:20]} {
					if strings.Contains(strings.ToLower(err.Error()), strings.ToLower(enc)) {
						t.Errorf("the error %q holds a key", err)
					}
				}
			}
		})
	}
}

func TestLoadKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys")
	if err := os.WriteFile(path, []byte(hex.EncodeToString(secretA)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := LoadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	if ids := k.KeyIDs(); len(ids) != 1 || ids[0] != idOf(secretA).String() {
		t.Errorf("KeyIDs = %q", ids)
	}

	if _, err := LoadKeys(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a missing file: %v, expected an error naming it", err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("\n"+hex.EncodeToString(secretA[:8])), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeys(bad); err == nil || !strings.Contains(err.Error(), bad+": line 2: the key is 8 bytes") {
		t.Errorf("a short key: %v, expected the path and the line", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("#\n"), maxKeyFileSize), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeys(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a 2 MiB file: %v, expected it refused", err)
	}
}
