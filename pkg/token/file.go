package token

import (
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultRecheck is how often a KeysFile looks at its file for a change.
const DefaultRecheck = 5 * time.Second

// KeysFile is a key file kept loaded: it is read again at most every
// Recheck when tokens are minted or verified, and its keys replaced when
// its contents changed (compared by digest: a copy that keeps the size and
// the modification time is a change too), so that keys rotate without a
// restart (add
// the new key as the first line, keep the old one until the tokens it
// signed have expired, then remove it). A file that cannot be read or
// parsed keeps the keys loaded before and is reported to OnError.
type KeysFile struct {
	path    string
	recheck time.Duration
	// OnError, when set, is told of a file that could not be reloaded.
	OnError func(error)
	// OnReload, when set, is told of the keys loaded by a reload.
	OnReload func(*Keys)

	keys   atomic.Pointer[Keys]
	mu     sync.Mutex // held while looking at the file
	next   time.Time  // when to look again
	digest [sha256.Size]byte
}

// OpenKeysFile loads the key file at path; recheck <= 0 means DefaultRecheck.
func OpenKeysFile(path string, recheck time.Duration) (*KeysFile, error) {
	if recheck <= 0 {
		recheck = DefaultRecheck
	}
	f := &KeysFile{path: path, recheck: recheck}
	k, digest, err := loadKeys(path)
	if err != nil {
		return nil, err
	}
	f.keys.Store(k)
	f.digest = digest
	f.next = time.Now().Add(recheck)
	return f, nil
}

// Keys returns the keys loaded now, re-reading the file first if it is
// time to look and it changed.
func (f *KeysFile) Keys() *Keys {
	f.maybeReload(time.Now())
	return f.keys.Load()
}

func (f *KeysFile) maybeReload(now time.Time) {
	if !f.mu.TryLock() {
		return // another caller is looking; the keys it has are current enough
	}
	defer f.mu.Unlock()
	if now.Before(f.next) {
		return
	}
	f.next = now.Add(f.recheck)
	k, digest, err := loadKeys(f.path)
	if err != nil {
		// The keys loaded before stay; a file caught half written is read
		// again at the next look.
		if f.OnError != nil {
			f.OnError(err)
		}
		return
	}
	if digest == f.digest {
		return
	}
	f.digest = digest
	f.keys.Store(k)
	if f.OnReload != nil {
		f.OnReload(k)
	}
}

// Mint mints with the keys loaded now (see Keys.Mint).
func (f *KeysFile) Mint(c Claims) (string, error) { return f.Keys().Mint(c) }

// Verify verifies with the keys loaded now (see Keys.Verify).
func (f *KeysFile) Verify(tok string, now time.Time) (Claims, error) {
	return f.Keys().Verify(tok, now)
}

// loadKeys reads and parses the key file at path, returning the digest of
// its contents.
func loadKeys(path string) (*Keys, [sha256.Size]byte, error) {
	text, err := readKeyFile(path)
	if err != nil {
		return nil, [sha256.Size]byte{}, err
	}
	k, err := ParseKeys(text)
	if err != nil {
		return nil, [sha256.Size]byte{}, fmt.Errorf("token keys %s: %w", path, err)
	}
	return k, sha256.Sum256(text), nil
}
