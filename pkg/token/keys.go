package token

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// MinKeyLen is the shortest key accepted, in bytes once decoded: the size
// of HMAC-SHA256's output, below which the key and not the hash is the
// weak part (RFC 2104, section 3).
const MinKeyLen = 32

// maxKeyFileSize bounds what LoadKeys reads: a key file holds a few lines.
const maxKeyFileSize = 1 << 20

// keyIDLen is the length of a key id in bytes, before base64url.
const keyIDLen = 8

// keyID names a key in a token: the first bytes of its SHA-256. It tells
// the keys of one file apart and lets a token name the key that signed it
// without revealing it.
type keyID [keyIDLen]byte

func idOf(secret []byte) keyID {
	sum := sha256.Sum256(secret)
	return keyID(sum[:keyIDLen])
}

func (id keyID) String() string { return base64.RawURLEncoding.EncodeToString(id[:]) }

type key struct {
	id     keyID
	secret []byte
}

// Keys are the keys tokens are signed and verified with: the first signs,
// every one verifies. Make them with ParseKeys or LoadKeys. Keys never
// change once made and are safe for use by several goroutines; to rotate,
// make new Keys and swap them in.
type Keys struct {
	keys []key // keys[0] signs
	// now is the clock Mint bounds expiries with (time.Now when nil).
	now func() time.Time
}

// ParseKeys reads a key file: one key a line, in hex or in base64 (standard
// or URL alphabet, padded or not), each at least MinKeyLen bytes once
// decoded. A line of hex digits only, of even length, is hex; any other line
// is base64. Blank lines and lines starting with # are ignored; a key line
// holds nothing else. The first key signs. Errors name the line, never the
// key.
func ParseKeys(text []byte) (*Keys, error) {
	k := &Keys{}
	seen := map[keyID]int{}
	for i, line := range bytes.Split(text, []byte("\n")) {
		n := i + 1
		s := strings.TrimSpace(string(line))
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		secret, err := decodeKey(s)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if len(secret) < MinKeyLen {
			return nil, fmt.Errorf("line %d: the key is %d bytes, expected at least %d (e.g. 64 hex digits from `openssl rand -hex 32`)", n, len(secret), MinKeyLen)
		}
		id := idOf(secret)
		if prev, ok := seen[id]; ok {
			// The same key twice (or, at odds of 2^-64, a key id shared by
			// two keys): tokens could not say which one signed them.
			return nil, fmt.Errorf("line %d: the same key as line %d", n, prev)
		}
		seen[id] = n
		k.keys = append(k.keys, key{id: id, secret: secret})
	}
	if len(k.keys) == 0 {
		return nil, errors.New("no key: expected one key a line, in hex or base64, at least 32 bytes each")
	}
	return k, nil
}

// LoadKeys reads the key file at path (see ParseKeys).
func LoadKeys(path string) (*Keys, error) {
	text, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseKeys(text)
	if err != nil {
		return nil, fmt.Errorf("token keys %s: %w", path, err)
	}
	return k, nil
}

// readKeyFile reads the key file at path, refusing one past maxKeyFileSize.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("token keys: %w", err)
	}
	defer f.Close()
	text, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("token keys %s: %w", path, err)
	}
	if len(text) > maxKeyFileSize {
		return nil, fmt.Errorf("token keys %s: larger than %d bytes; expected one key a line", path, maxKeyFileSize)
	}
	return text, nil
}

// KeyIDs returns the ids of the keys as tokens carry them, the signing key
// first: what to log, since the keys themselves must not be.
func (k *Keys) KeyIDs() []string {
	ids := make([]string, len(k.keys))
	for i, key := range k.keys {
		ids[i] = key.id.String()
	}
	return ids
}

// lookup returns the key with id, or nil.
func (k *Keys) lookup(id keyID) *key {
	for i := range k.keys {
		if k.keys[i].id == id {
			return &k.keys[i]
		}
	}
	return nil
}

// decodeKey decodes one key line, hex or base64. Base64 decodes strictly
// (no stray bits after the last byte), so a key has one spelling per
// alphabet.
func decodeKey(s string) ([]byte, error) {
	if len(s)%2 == 0 && isHex(s) {
		return hex.DecodeString(s)
	}
	url := strings.ContainsAny(s, "-_")
	if url && strings.ContainsAny(s, "+/") {
		return nil, errors.New("mixes the base64 alphabets (+/ and -_); expected hex or base64")
	}
	var enc *base64.Encoding
	switch padded := strings.HasSuffix(s, "="); {
	case url && padded:
		enc = base64.URLEncoding
	case url:
		enc = base64.RawURLEncoding
	case padded:
		enc = base64.StdEncoding
	default:
		enc = base64.RawStdEncoding
	}
	if strings.ContainsAny(s, "\r\n") {
		// Go's base64 skips line breaks: a stray CR inside a line would
		// otherwise go unnoticed.
		return nil, errors.New("expected hex or base64 on one line")
	}
	b, err := enc.Strict().DecodeString(s)
	if err != nil {
		return nil, errors.New("expected hex or base64 (standard or URL alphabet, padded or not)")
	}
	return b, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
