package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Claims are what a token allows: feedback on one response, optionally
// only as one identifier and under some annotation names, until it expires.
type Claims struct {
	// ResponseID is the provider's response id the token is for. Required.
	ResponseID string
	// Identifier is the only identifier the feedback may carry (the user's
	// id: Phoenix keeps one annotation per name and identifier, so the
	// holder's last vote wins). "" means any identifier.
	Identifier string
	// Names are the annotation names the feedback may use (compare with the
	// name after its default is applied). Empty means any name.
	Names []string
	// Expires is when the token stops being valid, to the second (Mint
	// drops any fraction). Required, at most MaxTTL after minting.
	Expires time.Time
}

// Version is the first part of every token of this format.
const Version = "fbt1"

// Bounds of a token and its claims.
const (
	// DefaultTTL is how long a token lives unless its minter says
	// otherwise: a conversation's worth, as LangSmith's presigned feedback
	// tokens.
	DefaultTTL = 3 * time.Hour
	// MaxTTL is the longest a token may live. A page can stay open over a
	// weekend and the Phoenix lookup still finds week-old spans, but a
	// leaked token must stop working within days, and a retired key must
	// be removable from the key file after a bounded wait.
	MaxTTL = 7 * 24 * time.Hour
	// MaxLen bounds a token's length in bytes: it travels in an HTTP
	// header or a beacon's body, and Verify reads nothing longer.
	MaxLen = 2048
	// MaxResponseIDLen and MaxIdentifierLen are pkg/feedback's bounds.
	MaxResponseIDLen = 256
	MaxIdentifierLen = 256
	// MaxNames and MaxNameLen bound Names (names as long as pkg/feedback
	// allows; MaxLen may bind first).
	MaxNames   = 16
	MaxNameLen = 256
)

// maxSkew is how far ahead of the verifier's clock a minter's clock may be:
// Verify accepts an expiry up to MaxTTL plus this much after its now.
const maxSkew = 5 * time.Minute

// Why Verify refuses a token. Each error Verify returns wraps exactly one
// of them (errors.Is) and says more after it.
var (
	// ErrMalformed: not a token of this format: wrong version, shape,
	// encoding, payload, or a lifetime past MaxTTL.
	ErrMalformed = errors.New("malformed token")
	// ErrUnknownKey: signed by a key not in the key file (retired, or
	// another deployment's).
	ErrUnknownKey = errors.New("token signed by an unknown key")
	// ErrBadSignature: the signature does not match: the token was changed,
	// or forged.
	ErrBadSignature = errors.New("token signature does not match")
	// ErrExpired: the token was valid and has expired.
	ErrExpired = errors.New("token expired")
)

// Why Claims.Allows refuses a feedback.
var (
	ErrWrongResponse   = errors.New("token is for another response")
	ErrWrongIdentifier = errors.New("token is for another identifier")
	ErrWrongName       = errors.New("token does not allow this annotation name")
)

// ErrInvalidClaims is why Mint refuses claims; the error names the field.
var ErrInvalidClaims = errors.New("invalid token claims")

// Mint returns a token for c, signed with the first key. The claims must be
// within the bounds above and expire at most MaxTTL from now.
func (k *Keys) Mint(c Claims) (string, error) {
	if len(k.keys) == 0 {
		return "", errors.New("token: no signing key; make Keys with ParseKeys or LoadKeys")
	}
	if err := c.check(); err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidClaims, err)
	}
	if c.Expires.IsZero() {
		return "", fmt.Errorf("%w: expires: required", ErrInvalidClaims)
	}
	exp := c.Expires.Unix()
	if exp < 1 {
		return "", fmt.Errorf("%w: expires: expected a time after 1970-01-01T00:00:00Z, got %s", ErrInvalidClaims, c.Expires.UTC().Format(time.RFC3339))
	}
	now := time.Now
	if k.now != nil {
		now = k.now
	}
	if limit := now().Add(MaxTTL); c.Expires.After(limit) {
		return "", fmt.Errorf("%w: expires: at most %s from now (%s), got %s", ErrInvalidClaims, MaxTTL, limit.UTC().Format(time.RFC3339), c.Expires.UTC().Format(time.RFC3339))
	}
	signer := &k.keys[0]
	payload := encodePayload(c, exp)
	var b strings.Builder
	b.Grow(len(Version) + 3 + base64.RawURLEncoding.EncodedLen(keyIDLen) +
		base64.RawURLEncoding.EncodedLen(len(payload)) + base64.RawURLEncoding.EncodedLen(sha256.Size))
	b.WriteString(Version)
	b.WriteByte('.')
	b.WriteString(signer.id.String())
	b.WriteByte('.')
	b.WriteString(base64.RawURLEncoding.EncodeToString(payload))
	sig := sign(signer.secret, b.String())
	b.WriteByte('.')
	b.WriteString(base64.RawURLEncoding.EncodeToString(sig))
	if b.Len() > MaxLen {
		return "", fmt.Errorf("%w: the token would be %d bytes, at most %d: shorten the response id, identifier or names", ErrInvalidClaims, b.Len(), MaxLen)
	}
	return b.String(), nil
}

// sign is the token's signature: HMAC-SHA256 of the text before its last
// dot.
func sign(secret []byte, signed string) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signed))
	return mac.Sum(nil)
}

// Verify checks tok against the keys and returns its claims when it is
// valid at now. The error wraps ErrMalformed, ErrUnknownKey,
// ErrBadSignature or ErrExpired; with ErrExpired the claims are returned
// too (they are authentic, and say what expired). Verify does not check the
// claims against a feedback: see Claims.Allows.
func (k *Keys) Verify(tok string, now time.Time) (Claims, error) {
	if len(tok) > MaxLen {
		return Claims{}, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(tok), MaxLen)
	}
	parts := strings.SplitN(tok, ".", 5)
	if parts[0] != Version {
		if isVersion(parts[0]) {
			return Claims{}, fmt.Errorf("%w: version %q, expected %q", ErrMalformed, parts[0], Version)
		}
		return Claims{}, fmt.Errorf("%w: expected %s.<key id>.<payload>.<signature>", ErrMalformed, Version)
	}
	if len(parts) != 4 {
		return Claims{}, fmt.Errorf("%w: %d dot-separated parts, expected 4: %s.<key id>.<payload>.<signature>", ErrMalformed, strings.Count(tok, ".")+1, Version)
	}
	kid, err := decodePart("key id", parts[1], keyIDLen)
	if err != nil {
		return Claims{}, err
	}
	payload, err := decodePart("payload", parts[2], 0)
	if err != nil {
		return Claims{}, err
	}
	sig, err := decodePart("signature", parts[3], sha256.Size)
	if err != nil {
		return Claims{}, err
	}
	key := k.lookup(keyID(kid))
	if key == nil {
		return Claims{}, fmt.Errorf("%w (key id %s): it was retired or belongs to another deployment", ErrUnknownKey, parts[1])
	}
	if !hmac.Equal(sign(key.secret, tok[:len(tok)-len(parts[3])-1]), sig) {
		return Claims{}, ErrBadSignature
	}
	// Only authenticated bytes are parsed: a payload that fails here was
	// signed with our key, by a minter that broke the recipe.
	c, err := decodePayload(payload)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	if !now.Before(c.Expires) {
		return c, fmt.Errorf("%w at %s", ErrExpired, c.Expires.Format(time.RFC3339))
	}
	if life := c.Expires.Sub(now); life > MaxTTL+maxSkew {
		return Claims{}, fmt.Errorf("%w: it expires in %s, later than the %s a token may live", ErrMalformed, life.Round(time.Second), MaxTTL)
	}
	return c, nil
}

// isVersion reports whether s looks like another version of the format:
// "fbt" and digits.
func isVersion(s string) bool {
	digits, ok := strings.CutPrefix(s, "fbt")
	return ok && digits != "" && strings.Trim(digits, "0123456789") == ""
}

// decodePart decodes one base64url part of a token, of exactly size bytes
// when size > 0, non-empty otherwise. Decoding is strict: no padding, no
// line breaks (which Go's decoder would skip), no stray bits after the last
// byte, so each part has exactly one spelling.
func decodePart(what, s string, size int) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return nil, fmt.Errorf("%w: %s: expected unpadded base64url, found %q", ErrMalformed, what, c)
		}
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %s: expected unpadded base64url: %v", ErrMalformed, what, err)
	case size > 0 && len(b) != size:
		return nil, fmt.Errorf("%w: %s: %d bytes, expected %d", ErrMalformed, what, len(b), size)
	case len(b) == 0:
		return nil, fmt.Errorf("%w: %s: empty", ErrMalformed, what)
	}
	return b, nil
}

// Allows reports whether the claims allow a feedback on responseID, with
// identifier and annotation name (the name after its default is applied).
// The error wraps ErrWrongResponse, ErrWrongIdentifier or ErrWrongName.
func (c Claims) Allows(responseID, identifier, name string) error {
	if responseID != c.ResponseID {
		return fmt.Errorf("%w: it is for %q", ErrWrongResponse, c.ResponseID)
	}
	if c.Identifier != "" && identifier != c.Identifier {
		return fmt.Errorf("%w: it is for %q", ErrWrongIdentifier, c.Identifier)
	}
	if len(c.Names) > 0 && !slices.Contains(c.Names, name) {
		return fmt.Errorf("%w %q: it allows %q", ErrWrongName, name, c.Names)
	}
	return nil
}

// check checks the bounds of the claims, all but Expires. Mint and Verify
// check the same bounds, so a token Mint refuses is one Verify refuses.
func (c Claims) check() error {
	switch {
	case c.ResponseID == "":
		return errors.New("response_id: required")
	case len(c.ResponseID) > MaxResponseIDLen:
		return fmt.Errorf("response_id: at most %d bytes, got %d", MaxResponseIDLen, len(c.ResponseID))
	case !utf8.ValidString(c.ResponseID):
		return errors.New("response_id: expected valid UTF-8 text")
	case len(c.Identifier) > MaxIdentifierLen:
		return fmt.Errorf("identifier: at most %d bytes, got %d", MaxIdentifierLen, len(c.Identifier))
	case !utf8.ValidString(c.Identifier):
		return errors.New("identifier: expected valid UTF-8 text")
	case len(c.Names) > MaxNames:
		return fmt.Errorf("names: at most %d, got %d", MaxNames, len(c.Names))
	}
	for i, n := range c.Names {
		switch {
		case n == "":
			return fmt.Errorf("names[%d]: expected a name, got an empty string", i)
		case len(n) > MaxNameLen:
			return fmt.Errorf("names[%d]: at most %d bytes, got %d", i, MaxNameLen, len(n))
		case !utf8.ValidString(n):
			return fmt.Errorf("names[%d]: expected valid UTF-8 text", i)
		case slices.Contains(c.Names[:i], n):
			return fmt.Errorf("names[%d]: %q is there twice", i, n)
		}
	}
	return nil
}
