// Package token mints and verifies per-response feedback tokens.
//
// A token lets a web page send feedback on one response, and only within the
// scope it was minted for: that response id, optionally one identifier (the
// user) and a set of annotation names, until it expires. Tokens are
// stateless: an HMAC-SHA256 over the token's own text, with a key from a
// key file that every replica shares ([ParseKeys], [LoadKeys]). The first
// key signs and every key verifies, so keys rotate without downtime: add a
// new key first, and remove the old one once the tokens it signed have
// expired (at most [MaxTTL] later).
//
// The format is versioned and defined byte for byte in docs/tokens.md, so
// that a Python or TypeScript backend mints tokens with its standard library:
//
//	fbt1.<key id>.<payload>.<signature>
//
// each part after the version in unpadded base64url; the key id is the first
// 8 bytes of the SHA-256 of the key, the payload a JSON object, and the
// signature the HMAC-SHA256 of the text before the last dot.
package token
