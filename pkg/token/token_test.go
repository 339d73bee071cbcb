package token

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// t0 is the tests' now.
var t0 = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

var (
	secretA = bytes.Repeat([]byte{0xa1}, 32)
	secretB = bytes.Repeat([]byte{0xb2}, 40)
	secretC = bytes.Repeat([]byte{0xc3}, 32)
)

// testKeys parses a key file of the secrets, in hex, first one signing, with
// its clock at t0.
func testKeys(t testing.TB, secrets ...[]byte) *Keys {
	t.Helper()
	var file strings.Builder
	for _, s := range secrets {
		file.WriteString(hex.EncodeToString(s) + "\n")
	}
	k, err := ParseKeys([]byte(file.String()))
	if err != nil {
		t.Fatal(err)
	}
	k.now = func() time.Time { return t0 }
	return k
}

func mint(t testing.TB, k *Keys, c Claims) string {
	t.Helper()
	tok, err := k.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// signRaw makes a token of any payload, signed with secret as the recipe
// says: what a minter in another language could send.
func signRaw(secret []byte, payload string) string {
	signed := Version + "." + idOf(secret).String() + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	return signed + "." + base64.RawURLEncoding.EncodeToString(sign(secret, signed))
}

var claims = Claims{
	ResponseID: "chatcmpl-abc123",
	Identifier: "user-7",
	Names:      []string{"user feedback", "correctness"},
	Expires:    t0.Add(DefaultTTL),
}

func TestMintVerify(t *testing.T) {
	k := testKeys(t, secretA)
	for _, tc := range []struct {
		name string
		c    Claims
	}{
		{"all claims", claims},
		{"any identifier, any name", Claims{ResponseID: "resp_1", Expires: t0.Add(time.Second)}},
		{"non-ASCII and JSON's specials", Claims{ResponseID: "msg_\"quoted\"\\<&>", Identifier: "ユーザー-ü\u2028\x00", Names: []string{"a&b", "😀"}, Expires: t0.Add(MaxTTL)}},
		{"longest fields", Claims{ResponseID: strings.Repeat("r", MaxResponseIDLen), Identifier: strings.Repeat("i", MaxIdentifierLen), Names: []string{strings.Repeat("n", MaxNameLen)}, Expires: t0.Add(MaxTTL)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := mint(t, k, tc.c)
			if !strings.HasPrefix(tok, "fbt1."+idOf(secretA).String()+".") {
				t.Errorf("token %s: expected the prefix fbt1.<key id of A>.", tok)
			}
			got, err := k.Verify(tok, t0)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !equalClaims(got, tc.c) {
				t.Errorf("Verify = %+v, expected %+v", got, tc.c)
			}
			if got.Expires.Location() != time.UTC {
				t.Errorf("Expires in %v, expected UTC", got.Expires.Location())
			}
			name := "any name"
			if len(tc.c.Names) > 0 {
				name = tc.c.Names[len(tc.c.Names)-1]
			}
			if err := got.Allows(tc.c.ResponseID, tc.c.Identifier, name); err != nil {
				t.Errorf("Allows its own scope: %v", err)
			}
		})
	}
}

func equalClaims(a, b Claims) bool {
	return a.ResponseID == b.ResponseID && a.Identifier == b.Identifier &&
		strings.Join(a.Names, "\x00") == strings.Join(b.Names, "\x00") && len(a.Names) == len(b.Names) &&
		a.Expires.Equal(b.Expires)
}

func TestMintDropsFractionOfSecond(t *testing.T) {
	k := testKeys(t, secretA)
	c := claims
	c.Expires = t0.Add(time.Hour + 999*time.Millisecond)
	got, err := k.Verify(mint(t, k, c), t0)
	if err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(time.Hour); !got.Expires.Equal(want) {
		t.Errorf("Expires = %v, expected %v (never later than asked)", got.Expires, want)
	}
}

func TestExpired(t *testing.T) {
	k := testKeys(t, secretA)
	tok := mint(t, k, claims)
	if _, err := k.Verify(tok, claims.Expires.Add(-time.Nanosecond)); err != nil {
		t.Errorf("a nanosecond before Expires: %v", err)
	}
	for _, now := range []time.Time{claims.Expires, claims.Expires.Add(time.Nanosecond), claims.Expires.Add(365 * 24 * time.Hour)} {
		got, err := k.Verify(tok, now)
		if !errors.Is(err, ErrExpired) {
			t.Errorf("Verify at %v: %v, expected ErrExpired", now, err)
		}
		// Expired claims are authentic, and say what expired.
		if got.ResponseID != claims.ResponseID {
			t.Errorf("Verify at %v returned %+v, expected the claims", now, got)
		}
	}
}

// TestTampered changes every byte of a token to every other value in turn:
// no change may verify.
func TestTampered(t *testing.T) {
	k := testKeys(t, secretA)
	tok := mint(t, k, claims)
	b := []byte(tok)
	for i := range b {
		orig := b[i]
		for v := range 256 {
			if byte(v) == orig {
				continue
			}
			b[i] = byte(v)
			if got, err := k.Verify(string(b), t0); err == nil {
				t.Fatalf("byte %d changed from %q to %q: verified as %+v", i, orig, byte(v), got)
			} else if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrBadSignature) {
				t.Fatalf("byte %d changed from %q to %q: %v, expected malformed, unknown key or bad signature", i, orig, byte(v), err)
			}
		}
		b[i] = orig
	}
	// Cut short or grown by a byte.
	for i := range len(tok) {
		if _, err := k.Verify(tok[:i], t0); err == nil {
			t.Errorf("the first %d bytes verified", i)
		}
	}
	for _, extra := range []string{"A", "=", ".", " ", "\n", "\x00"} {
		if _, err := k.Verify(tok+extra, t0); err == nil {
			t.Errorf("the token with %q after it verified", extra)
		}
		if _, err := k.Verify(extra+tok, t0); err == nil {
			t.Errorf("the token with %q before it verified", extra)
		}
	}
}

func TestBadSignature(t *testing.T) {
	k := testKeys(t, secretA)
	tok := mint(t, k, claims)
	// A payload of the attacker's choice, under the key id of A, signed with
	// another key.
	forged := signRaw(secretB, `{"response_id":"chatcmpl-other","exp":`+itoa(t0.Add(time.Hour).Unix())+`}`)
	forged = strings.Replace(forged, idOf(secretB).String(), idOf(secretA).String(), 1)
	// A's signature over another payload.
	dot := strings.LastIndexByte(tok, '.')
	swapped := signRaw(secretA, `{"response_id":"chatcmpl-other","exp":`+itoa(t0.Add(time.Hour).Unix())+`}`)
	swapped = swapped[:strings.LastIndexByte(swapped, '.')] + tok[dot:]
	for name, tok := range map[string]string{"forged": forged, "signature of another payload": swapped} {
		if _, err := k.Verify(tok, t0); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: %v, expected ErrBadSignature", name, err)
		}
	}
}

func TestRotation(t *testing.T) {
	old := testKeys(t, secretA)
	oldTok := mint(t, old, claims)

	// A new key goes first: it signs, and the old one still verifies.
	rotated := testKeys(t, secretB, secretA)
	if got := rotated.KeyIDs(); len(got) != 2 || got[0] != idOf(secretB).String() || got[1] != idOf(secretA).String() {
		t.Errorf("KeyIDs = %q, expected B's then A's", got)
	}
	if _, err := rotated.Verify(oldTok, t0); err != nil {
		t.Errorf("the old key's token after rotation: %v", err)
	}
	newTok := mint(t, rotated, claims)
	if !strings.HasPrefix(newTok, "fbt1."+idOf(secretB).String()+".") {
		t.Errorf("after rotation %s: expected it signed by the new key", newTok)
	}
	if _, err := rotated.Verify(newTok, t0); err != nil {
		t.Errorf("the new key's token: %v", err)
	}
	// Replicas not yet rotated do not know the new key.
	if _, err := old.Verify(newTok, t0); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("the new key's token on the old keys: %v, expected ErrUnknownKey", err)
	}

	// The old key retired: its tokens are refused, the new key's are not.
	retired := testKeys(t, secretB)
	if _, err := retired.Verify(oldTok, t0); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("the retired key's token: %v, expected ErrUnknownKey", err)
	} else if !strings.Contains(err.Error(), idOf(secretA).String()) {
		t.Errorf("the error %q does not name the key id", err)
	}
	if _, err := retired.Verify(newTok, t0); err != nil {
		t.Errorf("the new key's token after retiring the old: %v", err)
	}
	// A key of another deployment.
	if _, err := testKeys(t, secretC).Verify(newTok, t0); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("another deployment's token: %v, expected ErrUnknownKey", err)
	}
}

func TestAllows(t *testing.T) {
	scoped := claims // user-7, names "user feedback" and "correctness"
	open := Claims{ResponseID: claims.ResponseID, Expires: claims.Expires}
	for _, tc := range []struct {
		name                   string
		c                      Claims
		response, ident, aname string
		want                   error
	}{
		{"in scope", scoped, "chatcmpl-abc123", "user-7", "correctness", nil},
		{"the other name", scoped, "chatcmpl-abc123", "user-7", "user feedback", nil},
		{"wrong response", scoped, "chatcmpl-abc124", "user-7", "correctness", ErrWrongResponse},
		{"response differs in case", scoped, "CHATCMPL-ABC123", "user-7", "correctness", ErrWrongResponse},
		{"wrong identifier", scoped, "chatcmpl-abc123", "user-8", "correctness", ErrWrongIdentifier},
		{"no identifier when the token has one", scoped, "chatcmpl-abc123", "", "correctness", ErrWrongIdentifier},
		{"wrong name", scoped, "chatcmpl-abc123", "user-7", "helpfulness", ErrWrongName},
		{"empty name when names are set", scoped, "chatcmpl-abc123", "user-7", "", ErrWrongName},
		{"wrong response first", scoped, "other", "other", "other", ErrWrongResponse},
		{"open token, any identifier and name", open, "chatcmpl-abc123", "anyone", "anything", nil},
		{"open token, no identifier", open, "chatcmpl-abc123", "", "user feedback", nil},
		{"open token, wrong response", open, "chatcmpl-x", "", "user feedback", ErrWrongResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Allows(tc.response, tc.ident, tc.aname)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Allows = %v, expected %v", err, tc.want)
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	k := testKeys(t, secretA)
	tok := mint(t, k, claims)
	parts := strings.Split(tok, ".")
	kid, payload, sig := parts[1], parts[2], parts[3]
	// A last character whose unused low bits are set: the same bytes as
	// the original under a lenient decoder.
	strayBits := func(s string) string {
		last := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", s[len(s)-1])
		return s[:len(s)-1] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last^1])
	}
	for _, tc := range []struct {
		name, tok, want string
	}{
		{"empty", "", "expected fbt1.<key id>.<payload>.<signature>"},
		{"a JWT", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "expected fbt1."},
		{"the server token", "s3cret-server-token", "expected fbt1."},
		{"with Bearer", "Bearer " + tok, "expected fbt1."},
		{"another version", "fbt2." + kid + "." + payload + "." + sig, `version "fbt2", expected "fbt1"`},
		{"version in capitals", "FBT1." + kid + "." + payload + "." + sig, "expected fbt1."},
		{"version only", "fbt1", "1 dot-separated parts, expected 4"},
		{"three parts", "fbt1." + kid + "." + payload, "3 dot-separated parts"},
		{"five parts", tok + ".x", "5 dot-separated parts"},
		{"many parts", tok + strings.Repeat(".", 100), "104 dot-separated parts"},
		{"empty parts", "fbt1...", "key id"},
		{"empty payload", "fbt1." + kid + ".." + sig, "payload: empty"},
		{"padding", "fbt1." + kid + "." + payload + "." + sig + "=", "found '='"},
		{"standard alphabet", "fbt1." + kid + "." + payload + "." + strings.NewReplacer("-", "+", "_", "/").Replace(sig), "signature: expected unpadded base64url"},
		{"line break", "fbt1." + kid + "." + payload[:10] + "\n" + payload[10:] + "." + sig, `found '\n'`},
		{"space", "fbt1." + kid + "." + payload + " ." + sig, "found ' '"},
		{"stray bits in the signature", "fbt1." + kid + "." + payload + "." + strayBits(sig), "signature: expected unpadded base64url"},
		{"stray bits in the key id", "fbt1." + strayBits(kid) + "." + payload + "." + sig, "key id: expected unpadded base64url"},
		{"impossible length", "fbt1." + kid + "." + payload[:len(payload)-len(payload)%4] + "A." + sig, "payload: expected unpadded base64url"},
		{"short key id", "fbt1." + kid[:8] + "." + payload + "." + sig, "key id: 6 bytes, expected 8"},
		{"long signature", "fbt1." + kid + "." + payload + "." + sig + "AAAA", "signature: 35 bytes, expected 32"},
		{"too long", "fbt1." + kid + "." + strings.Repeat("A", MaxLen) + "." + sig, "bytes, at most 2048"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := k.Verify(tc.tok, t0)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Verify = %v, expected ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify = %q, expected it to say %q", err, tc.want)
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestZeroKeys(t *testing.T) {
	var k Keys
	if _, err := k.Mint(claims); err == nil {
		t.Error("Mint with no keys: expected an error")
	}
	if _, err := k.Verify(mint(t, testKeys(t, secretA), claims), t0); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Verify with no keys: %v, expected ErrUnknownKey", err)
	}
}
