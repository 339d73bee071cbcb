package token

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestKeysFileReloads(t *testing.T) {
	const (
		old   = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
		fresh = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"
	)
	path := filepath.Join(t.TempDir(), "keys")
	write := func(text string, mod time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().Add(-time.Hour)
	write(old+"\n", t0)
	f, err := OpenKeysFile(path, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var reloads, failures int
	f.OnReload = func(*Keys) { reloads++ }
	f.OnError = func(error) { failures++ }
	exp := time.Now().Add(time.Hour)
	byOld, err := f.Mint(Claims{ResponseID: "r", Expires: exp})
	if err != nil {
		t.Fatal(err)
	}

	// Rotation: the new key signs, the old one still verifies.
	write(fresh+"\n"+old+"\n", t0.Add(time.Minute))
	time.Sleep(2 * time.Millisecond)
	byFresh, err := f.Mint(Claims{ResponseID: "r", Expires: exp})
	if err != nil {
		t.Fatal(err)
	}
	if byFresh[:len("fbt1.")+11] == byOld[:len("fbt1.")+11] {
		t.Error("after the rotation, tokens are still signed by the old key")
	}
	for _, tok := range []string{byOld, byFresh} {
		if _, err := f.Verify(tok, time.Now()); err != nil {
			t.Errorf("Verify after rotation: %v", err)
		}
	}

	// A broken file keeps the keys loaded, and is reported.
	write("not a key\n", t0.Add(2*time.Minute))
	time.Sleep(2 * time.Millisecond)
	if _, err := f.Verify(byFresh, time.Now()); err != nil {
		t.Errorf("Verify with a broken file: %v", err)
	}
	if failures == 0 {
		t.Error("the broken file was not reported")
	}

	// Retirement: the old key gone, its tokens are refused.
	write(fresh+"\n", t0.Add(3*time.Minute))
	time.Sleep(2 * time.Millisecond)
	if _, err := f.Verify(byOld, time.Now()); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Verify of a retired key's token = %v, want ErrUnknownKey", err)
	}
	if _, err := f.Verify(byFresh, time.Now()); err != nil {
		t.Errorf("Verify by the remaining key: %v", err)
	}
	if reloads != 2 {
		t.Errorf("reloads = %d, want 2", reloads)
	}
}

func TestOpenKeysFileFails(t *testing.T) {
	if _, err := OpenKeysFile(filepath.Join(t.TempDir(), "missing"), 0); err == nil {
		t.Error("a missing file opened")
	}
}

// A replacement with the same size and modification time (cp -p, an
// archive) is noticed: the contents are compared.
func TestKeysFileSeesSameSizeSameTime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	mod := time.Now().Add(-time.Hour)
	write := func(key string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	write("c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3")
	f, err := OpenKeysFile(path, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := f.Mint(Claims{ResponseID: "r", Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	write("d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4")
	time.Sleep(2 * time.Millisecond)
	if _, err := f.Verify(tok, time.Now()); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Verify after the key was replaced in place: %v, want ErrUnknownKey", err)
	}
}
