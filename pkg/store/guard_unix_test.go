//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package store

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestGuardedFault reads a memory-mapped file past its end, as bbolt does
// on a truncated file: SIGBUS, which would kill the process, is an error.
func TestGuardedFault(t *testing.T) {
	path := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(path, []byte{1}, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ps := os.Getpagesize()
	m, err := syscall.Mmap(int(f.Fd()), 0, 4*ps, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	var b byte
	err = guarded(func() error {
		b = m[2*ps] // past the end of the file, inside the mapping
		return nil
	})
	var pe *panicError
	if !errors.As(err, &pe) {
		t.Fatalf("guarded = %v (read %d), want a panicError", err, b)
	}
	t.Log(err)
	// And the goroutine is back to crashing on faults elsewhere.
	if err := guarded(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
}
