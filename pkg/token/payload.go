package token

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// payload is the JSON object in a token, as Mint writes it: these keys in
// this order, no spaces, empty optional fields left out.
type payload struct {
	ResponseID string   `json:"response_id"`
	Identifier string   `json:"identifier,omitempty"`
	Names      []string `json:"names,omitempty"`
	Exp        int64    `json:"exp"`
}

// encodePayload returns the payload of a token for c, which check accepted,
// expiring at exp (Unix seconds).
func encodePayload(c Claims, exp int64) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// <, > and & as themselves: shorter, and as other languages' encoders
	// write them.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(payload{ResponseID: c.ResponseID, Identifier: c.Identifier, Names: c.Names, Exp: exp}); err != nil {
		panic("token: encoding strings and an integer failed: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// decodePayload reads a token's payload strictly. What is signed is the
// payload's bytes, not a canonical form of the claims, so any spelling of
// the object is accepted (key order, spaces, escapes), but every spelling
// must have one meaning in every JSON parser: keys at most once, no
// unknown keys, values of the exact type, text that is valid UTF-8 with no
// lone surrogate escapes (which parsers replace, or not, as they please).
func decodePayload(p []byte) (Claims, error) {
	var c Claims
	if !utf8.Valid(p) {
		return c, errors.New("expected UTF-8 JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return c, errors.New("expected a JSON object")
	}
	var exp int64
	var seen fields
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return c, syntaxError(err)
		}
		name := t.(string) // object keys are strings, or Token fails
		f := fieldOf(name)
		if f == 0 {
			return c, fmt.Errorf("%q: unknown key; expected response_id, identifier, names, exp", name)
		}
		if seen&f != 0 {
			return c, fmt.Errorf("%q: the key is there twice", name)
		}
		seen |= f
		switch f {
		case fieldResponseID:
			c.ResponseID, err = stringValue(dec, name)
		case fieldIdentifier:
			c.Identifier, err = stringValue(dec, name)
		case fieldNames:
			c.Names, err = namesValue(dec)
		case fieldExp:
			exp, err = expValue(dec)
		}
		if err != nil {
			return c, err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return c, syntaxError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return c, errors.New("expected one JSON object; found more after it")
	}
	if err := checkEscapes(p); err != nil {
		return c, err
	}
	if seen&fieldExp == 0 {
		return c, errors.New("exp: required")
	}
	if err := c.check(); err != nil {
		return c, err
	}
	if len(c.Names) == 0 {
		c.Names = nil // [] and no names both mean any name
	}
	c.Expires = time.Unix(exp, 0).UTC()
	return c, nil
}

// fields is a set of the payload's keys.
type fields uint8

const (
	fieldResponseID fields = 1 << iota
	fieldIdentifier
	fieldNames
	fieldExp
)

func fieldOf(key string) fields {
	switch key {
	case "response_id":
		return fieldResponseID
	case "identifier":
		return fieldIdentifier
	case "names":
		return fieldNames
	case "exp":
		return fieldExp
	}
	return 0
}

func syntaxError(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("the JSON object is cut short")
	}
	return fmt.Errorf("malformed JSON: %v", err)
}

func stringValue(dec *json.Decoder, name string) (string, error) {
	t, err := dec.Token()
	if err != nil {
		return "", syntaxError(err)
	}
	s, ok := t.(string)
	if !ok {
		return "", fmt.Errorf("%s: expected a string, got %s", name, describe(t))
	}
	return s, nil
}

func namesValue(dec *json.Decoder) ([]string, error) {
	t, err := dec.Token()
	if err != nil {
		return nil, syntaxError(err)
	}
	if t != json.Delim('[') {
		return nil, fmt.Errorf("names: expected an array of strings, got %s", describe(t))
	}
	names := []string{}
	for dec.More() {
		if len(names) == MaxNames {
			return nil, fmt.Errorf("names: at most %d", MaxNames)
		}
		t, err := dec.Token()
		if err != nil {
			return nil, syntaxError(err)
		}
		s, ok := t.(string)
		if !ok {
			return nil, fmt.Errorf("names[%d]: expected a string, got %s", len(names), describe(t))
		}
		names = append(names, s)
	}
	if _, err := dec.Token(); err != nil { // the closing bracket
		return nil, syntaxError(err)
	}
	return names, nil
}

// maxExp bounds exp where JavaScript's numbers are still exact integers,
// and far from where time.Unix overflows; Verify refuses anything past
// MaxTTL anyway.
const maxExp = 1<<53 - 1

// expValue reads exp: Unix seconds, a positive integer written as one (no
// fraction, no exponent).
func expValue(dec *json.Decoder) (int64, error) {
	t, err := dec.Token()
	if err != nil {
		return 0, syntaxError(err)
	}
	n, ok := t.(json.Number)
	if !ok {
		return 0, fmt.Errorf("exp: expected Unix seconds, got %s", describe(t))
	}
	exp, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil || exp < 1 || exp > maxExp {
		return 0, fmt.Errorf("exp: expected Unix seconds as a positive integer, got %s", n)
	}
	return exp, nil
}

// describe names the JSON value of a token the decoder returned.
func describe(t json.Token) string {
	switch v := t.(type) {
	case json.Delim:
		switch v {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprint(t)
}

// checkEscapes refuses \u escapes of lone surrogates in the valid JSON p:
// encoding/json turns them into U+FFFD, other parsers into other things, so
// the signed bytes would not mean one text.
func checkEscapes(p []byte) error {
	// In valid JSON a backslash only starts an escape inside a string.
	for i := 0; i < len(p); i++ {
		if p[i] != '\\' {
			continue
		}
		if p[i+1] != 'u' {
			i++ // \" \\ \/ \b \f \n \r \t
			continue
		}
		r := hex4(p[i+2 : i+6])
		i += 5
		if !utf16.IsSurrogate(r) {
			continue
		}
		if r < 0xdc00 && i+6 < len(p) && p[i+1] == '\\' && p[i+2] == 'u' {
			if low := hex4(p[i+3 : i+7]); 0xdc00 <= low && low <= 0xdfff {
				i += 6
				continue
			}
		}
		return fmt.Errorf("a string holds a lone surrogate (\\u%04x); expected valid Unicode text", r)
	}
	return nil
}

// hex4 decodes the 4 hex digits of a \u escape that the JSON decoder
// accepted.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case '0' <= c && c <= '9':
			r |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			r |= rune(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}
