package token

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzVerify: Verify never panics, every refusal says why with one of the
// four errors, and nothing is accepted but the tokens the test signed.
func FuzzVerify(f *testing.F) {
	k := testKeys(f, secretA, secretB)
	old := testKeys(f, secretB)
	exp := itoa(t0.Add(time.Hour).Unix())
	made := map[string]bool{}
	for _, tok := range []string{
		mint(f, k, claims),
		mint(f, k, Claims{ResponseID: "resp_1", Expires: t0.Add(time.Minute)}),
		mint(f, k, Claims{ResponseID: "msg_ü😀", Identifier: "\x00", Names: []string{"a", "b"}, Expires: t0.Add(MaxTTL)}),
		mint(f, old, claims),
		signRaw(secretA, `{"exp": `+exp+`, "response_id": "r\u00fc", "names": []}`),
		signRaw(secretB, `{"response_id":"r","identifier":"","exp":`+exp+"}\n"),
	} {
		made[tok] = true
		f.Add(tok)
	}
	// Signed, but refused.
	f.Add(signRaw(secretA, `{"response_id":"r","response_id":"s","exp":`+exp+`}`))
	f.Add(signRaw(secretA, `{"response_id":"\ud800","exp":`+exp+`}`))
	f.Add(signRaw(secretA, `{"response_id":"r","exp":1}`))
	f.Add(signRaw(secretC, `{"response_id":"r","exp":`+exp+`}`))
	for _, s := range []string{"", "fbt1", "fbt1...", "fbt1.AAAAAAAAAAA.e30.AAAA", "fbt9.a.b.c", strings.Repeat(".", 3000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := k.Verify(tok, t0)
		if err == nil {
			if !made[tok] {
				t.Fatalf("accepted %q, which the test did not sign, as %+v", tok, c)
			}
			if cerr := c.check(); cerr != nil {
				t.Fatalf("accepted %q with claims out of bounds: %v", tok, cerr)
			}
			return
		}
		n := 0
		for _, e := range []error{ErrMalformed, ErrUnknownKey, ErrBadSignature, ErrExpired} {
			if errors.Is(err, e) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("Verify(%q) = %v, expected it to wrap exactly one of the four errors", tok, err)
		}
	})
}

// FuzzPayload checks the strict payload reader against encoding/json: what
// it accepts, encoding/json reads the same way, and Mint's spelling of the
// claims reads back to them.
func FuzzPayload(f *testing.F) {
	for _, s := range []string{
		`{"response_id":"r1","identifier":"u1","names":["a","b"],"exp":1800000000}`,
		`{"exp": 1800000000, "names": ["\u00fc", "\ud83d\ude00"], "response_id": "r1"}`,
		`{"response\u005fid":"r","exp":1,"exp":2}`,
		`{"response_id":"\ud83d","exp":1}`,
		`{"response_id":"r","exp":1.0}`,
		`{"response_id":"r","names":[],"identifier":"","exp":1}{}`,
		`[]`, `"x"`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		c, err := decodePayload(p)
		if err != nil {
			return
		}
		var std payload
		dec := json.NewDecoder(bytes.NewReader(p))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&std); err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", p, err)
		}
		if std.ResponseID != c.ResponseID || std.Identifier != c.Identifier || !slices.Equal(std.Names, c.Names) || std.Exp != c.Expires.Unix() {
			t.Fatalf("%q: read as %+v, encoding/json reads %+v", p, c, std)
		}
		again, err := decodePayload(encodePayload(c, c.Expires.Unix()))
		if err != nil || !equalClaims(again, c) {
			t.Fatalf("%q: Mint's spelling of %+v reads back as %+v, %v", p, c, again, err)
		}
	})
}
