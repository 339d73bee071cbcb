package token

import "testing"

func BenchmarkMint(b *testing.B) {
	k := testKeys(b, secretA, secretB)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Mint(claims); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	k := testKeys(b, secretB, secretA)
	tok := mint(b, testKeys(b, secretA), claims) // signed by the second key
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Verify(tok, t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyForged is the cost of refusing a forgery: an attacker's
// request costs the proxy this much before any rate limit.
func BenchmarkVerifyForged(b *testing.B) {
	k := testKeys(b, secretA)
	tok := mint(b, k, claims)
	forged := tok[:len(tok)-1] + "A"
	if forged == tok {
		forged = tok[:len(tok)-1] + "Q"
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Verify(forged, t0); err == nil {
			b.Fatal("a forgery verified")
		}
	}
}
