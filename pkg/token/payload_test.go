package token

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestPayload verifies tokens signed with the right key over hand-written
// payloads: what other languages' minters may write is accepted, anything
// that could mean two things, or nothing, is refused.
func TestPayload(t *testing.T) {
	k := testKeys(t, secretA)
	exp := itoa(t0.Add(time.Hour).Unix())
	accepted := []struct {
		name, payload string
		want          Claims
	}{
		{"Go's spelling", `{"response_id":"r1","identifier":"u1","names":["a","b"],"exp":` + exp + `}`,
			Claims{ResponseID: "r1", Identifier: "u1", Names: []string{"a", "b"}}},
		{"Python's json.dumps defaults: spaces, ASCII escapes", `{"exp": ` + exp + `, "names": ["\u00fc", "\ud83d\ude00"], "response_id": "r1", "identifier": "\u30e6"}`,
			Claims{ResponseID: "r1", Identifier: "ユ", Names: []string{"ü", "😀"}}},
		{"raw UTF-8, escaped key", `{"response\u005fid":"rü😀","exp":` + exp + "}\n",
			Claims{ResponseID: "rü😀"}},
		{"empty identifier and names mean any", `{"response_id":"r1","identifier":"","names":[],"exp":` + exp + `}`,
			Claims{ResponseID: "r1"}},
		{"escapes of every kind", `{"response_id":"\"\\\/\b\f\n\r\t\u0000","exp":` + exp + `}`,
			Claims{ResponseID: "\"\\/\b\f\n\r\t\x00"}},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			got, err := k.Verify(signRaw(secretA, tc.payload), t0)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			tc.want.Expires = t0.Add(time.Hour)
			if !equalClaims(got, tc.want) || (got.Names == nil) != (tc.want.Names == nil) {
				t.Errorf("Verify = %#v, expected %#v", got, tc.want)
			}
		})
	}

	long := strings.Repeat("x", 257)
	refused := []struct{ name, payload, want string }{
		{"not JSON", `response_id=r1`, "expected a JSON object"},
		{"an array", `["r1",` + exp + `]`, "expected a JSON object"},
		{"empty object", `{}`, "exp: required"},
		{"no response id", `{"exp":` + exp + `}`, "response_id: required"},
		{"empty response id", `{"response_id":"","exp":` + exp + `}`, "response_id: required"},
		{"no exp", `{"response_id":"r1"}`, "exp: required"},
		{"key twice", `{"response_id":"r1","response_id":"r2","exp":` + exp + `}`, `"response_id": the key is there twice`},
		{"key twice, once escaped", `{"response_id":"r1","response\u005fid":"r2","exp":` + exp + `}`, "twice"},
		{"exp twice", `{"response_id":"r1","exp":1,"exp":` + exp + `}`, `"exp": the key is there twice`},
		{"unknown key", `{"response_id":"r1","exp":` + exp + `,"aud":"x"}`, `"aud": unknown key`},
		{"key in another case", `{"Response_ID":"r1","exp":` + exp + `}`, "unknown key"},
		{"exp as a string", `{"response_id":"r1","exp":"` + exp + `"}`, "exp: expected Unix seconds, got a string"},
		{"exp with a fraction", `{"response_id":"r1","exp":` + exp + `.0}`, "positive integer, got " + exp + ".0"},
		{"exp with an exponent", `{"response_id":"r1","exp":1.8e9}`, "positive integer, got 1.8e9"},
		{"exp in milliseconds past int64", `{"response_id":"r1","exp":99999999999999999999}`, "positive integer"},
		{"exp past JavaScript's exact integers", `{"response_id":"r1","exp":9007199254740992}`, "positive integer"},
		{"negative exp", `{"response_id":"r1","exp":-1}`, "positive integer, got -1"},
		{"zero exp", `{"response_id":"r1","exp":0}`, "positive integer, got 0"},
		{"null identifier", `{"response_id":"r1","identifier":null,"exp":` + exp + `}`, "identifier: expected a string, got null"},
		{"response id a number", `{"response_id":1,"exp":` + exp + `}`, "response_id: expected a string, got a number"},
		{"names a string", `{"response_id":"r1","names":"a","exp":` + exp + `}`, "names: expected an array of strings, got a string"},
		{"names with a number", `{"response_id":"r1","names":["a",1],"exp":` + exp + `}`, "names[1]: expected a string, got a number"},
		{"names with an object", `{"response_id":"r1","names":[{}],"exp":` + exp + `}`, "names[0]: expected a string, got an object"},
		{"names twice over", `{"response_id":"r1","names":["a","a"],"exp":` + exp + `}`, `names[1]: "a" is there twice`},
		{"empty name", `{"response_id":"r1","names":[""],"exp":` + exp + `}`, "names[0]: expected a name"},
		{"too many names", `{"response_id":"r1","names":["1","2","3","4","5","6","7","8","9","10","11","12","13","14","15","16","17"],"exp":` + exp + `}`, "names: at most 16"},
		{"response id too long", `{"response_id":"` + long + `","exp":` + exp + `}`, "response_id: at most 256 bytes, got 257"},
		{"identifier too long", `{"response_id":"r1","identifier":"` + long + `","exp":` + exp + `}`, "identifier: at most 256 bytes, got 257"},
		{"name too long", `{"response_id":"r1","names":["` + long + `"],"exp":` + exp + `}`, "names[0]: at most 256 bytes, got 257"},
		{"invalid UTF-8", `{"response_id":"r` + "\xff" + `","exp":` + exp + `}`, "expected UTF-8 JSON"},
		{"lone high surrogate", `{"response_id":"r\ud83d","exp":` + exp + `}`, `lone surrogate (\ud83d)`},
		{"lone low surrogate", `{"response_id":"r\ude00","exp":` + exp + `}`, `lone surrogate (\ude00)`},
		{"surrogates reversed", `{"response_id":"\ude00\ud83d","exp":` + exp + `}`, "lone surrogate"},
		{"high surrogate before a non-surrogate", `{"response_id":"\ud83d\u0041","exp":` + exp + `}`, "lone surrogate"},
		{"two objects", `{"response_id":"r1","exp":` + exp + `}{}`, "found more after it"},
		{"a stray brace", `{"response_id":"r1","exp":` + exp + `}}`, "found more after it"},
		{"cut short", `{"response_id":"r1","exp":` + exp, "cut short"},
		{"trailing comma", `{"response_id":"r1","exp":` + exp + `,}`, "malformed JSON"},
		{"names cut short", `{"response_id":"r1","names":["a"`, "cut short"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			_, err := k.Verify(signRaw(secretA, tc.payload), t0)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Verify = %v, expected ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify = %q, expected it to say %q", err, tc.want)
			}
		})
	}
}

// TestLifetime: Mint refuses expiries past MaxTTL, Verify too (a minter of
// another language may not check), with a little slack for clocks.
func TestLifetime(t *testing.T) {
	k := testKeys(t, secretA)
	c := claims
	c.Expires = t0.Add(MaxTTL + time.Second)
	if _, err := k.Mint(c); !errors.Is(err, ErrInvalidClaims) || !strings.Contains(err.Error(), "expires: at most 168h0m0s from now") {
		t.Errorf("Mint past MaxTTL: %v, expected ErrInvalidClaims about expires", err)
	}
	tok := func(life time.Duration) string {
		return signRaw(secretA, `{"response_id":"r1","exp":`+itoa(t0.Add(life).Unix())+`}`)
	}
	if _, err := k.Verify(tok(MaxTTL+maxSkew), t0); err != nil {
		t.Errorf("MaxTTL and the allowed skew: %v", err)
	}
	_, err := k.Verify(tok(MaxTTL+maxSkew+time.Second), t0)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "later than the 168h0m0s a token may live") {
		t.Errorf("past MaxTTL and the skew: %v, expected ErrMalformed about its life", err)
	}
	if _, err := k.Verify(signRaw(secretA, `{"response_id":"r1","exp":9223372036854775807}`), t0); !errors.Is(err, ErrMalformed) {
		t.Errorf("the largest exp: %v, expected ErrMalformed", err)
	}
}

func TestMintInvalid(t *testing.T) {
	k := testKeys(t, secretA)
	exp := t0.Add(time.Hour)
	name := strings.Repeat("n", MaxNameLen)
	for _, tc := range []struct {
		name string
		c    Claims
		want string
	}{
		{"no response id", Claims{Expires: exp}, "response_id: required"},
		{"response id too long", Claims{ResponseID: strings.Repeat("r", 257), Expires: exp}, "response_id: at most 256 bytes, got 257"},
		{"response id not UTF-8", Claims{ResponseID: "r\xff", Expires: exp}, "response_id: expected valid UTF-8"},
		{"identifier too long", Claims{ResponseID: "r", Identifier: strings.Repeat("i", 257), Expires: exp}, "identifier: at most 256 bytes"},
		{"identifier not UTF-8", Claims{ResponseID: "r", Identifier: "\xc3", Expires: exp}, "identifier: expected valid UTF-8"},
		{"empty name", Claims{ResponseID: "r", Names: []string{"a", ""}, Expires: exp}, "names[1]: expected a name"},
		{"name twice", Claims{ResponseID: "r", Names: []string{"a", "b", "a"}, Expires: exp}, `names[2]: "a" is there twice`},
		{"name too long", Claims{ResponseID: "r", Names: []string{name + "n"}, Expires: exp}, "names[0]: at most 256 bytes"},
		{"name not UTF-8", Claims{ResponseID: "r", Names: []string{"\xff"}, Expires: exp}, "names[0]: expected valid UTF-8"},
		{"too many names", Claims{ResponseID: "r", Names: strings.Split("a b c d e f g h i j k l m n o p q", " "), Expires: exp}, "names: at most 16, got 17"},
		{"no expiry", Claims{ResponseID: "r"}, "expires: required"},
		{"expiry before 1970", Claims{ResponseID: "r", Expires: time.Unix(-1, 0)}, "expires: expected a time after 1970"},
		{"longer than MaxLen", Claims{ResponseID: "r", Names: []string{name[1:] + "1", name[1:] + "2", name[1:] + "3", name[1:] + "4", name[1:] + "5", name[1:] + "6"}, Expires: exp}, "bytes, at most 2048"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := k.Mint(tc.c)
			if !errors.Is(err, ErrInvalidClaims) {
				t.Fatalf("Mint = %q, %v, expected ErrInvalidClaims", tok, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Mint = %q, expected it to say %q", err, tc.want)
			}
		})
	}
	// An expiry in the past is the minter's business (a token for a test);
	// Verify refuses it.
	c := claims
	c.Expires = t0.Add(-time.Hour)
	if _, err := k.Verify(mint(t, k, c), t0); !errors.Is(err, ErrExpired) {
		t.Errorf("a token minted expired: %v, expected ErrExpired", err)
	}
}
