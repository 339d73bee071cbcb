package token_test

import (
	"fmt"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/token"
)

// The worked example of docs/tokens.md: a fixed key and fixed claims, and
// the token they make. TestDocsExample checks that the page shows these.
const (
	exampleKeyHex  = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	examplePayload = `{"response_id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","identifier":"user-42","names":["user feedback"],"exp":1735689600}`
	exampleToken   = "fbt1.Yw3NKWbEM2Y.eyJyZXNwb25zZV9pZCI6ImNoYXRjbXBsLUI5TUJzOENqY3ZPVTJqTG40bjU3MFM1cU1KS2NUIiwiaWRlbnRpZmllciI6InVzZXItNDIiLCJuYW1lcyI6WyJ1c2VyIGZlZWRiYWNrIl0sImV4cCI6MTczNTY4OTYwMH0.g9N2QgCm8a6C-wAtixWvy7UuiERA-ji7V1x59yDRY94"
)

var exampleClaims = token.Claims{
	ResponseID: "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
	Identifier: "user-42",
	Names:      []string{"user feedback"},
	Expires:    time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), // 1735689600
}

func ExampleKeys_Mint() {
	keys, err := token.ParseKeys([]byte("# the signing key first\n" + exampleKeyHex + "\n"))
	if err != nil {
		panic(err)
	}
	tok, err := keys.Mint(exampleClaims)
	if err != nil {
		panic(err)
	}
	fmt.Println(tok)

	claims, err := keys.Verify(tok, time.Date(2024, 12, 31, 22, 0, 0, 0, time.UTC))
	fmt.Printf("%s %s %q %s %v\n", claims.ResponseID, claims.Identifier, claims.Names, claims.Expires.Format(time.RFC3339), err)
	fmt.Println(claims.Allows("chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "user-42", "user feedback"))
	fmt.Println(claims.Allows("chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "user-43", "user feedback"))

	_, err = keys.Verify(tok, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	fmt.Println(err)
	// Output:
	// fbt1.Yw3NKWbEM2Y.eyJyZXNwb25zZV9pZCI6ImNoYXRjbXBsLUI5TUJzOENqY3ZPVTJqTG40bjU3MFM1cU1KS2NUIiwiaWRlbnRpZmllciI6InVzZXItNDIiLCJuYW1lcyI6WyJ1c2VyIGZlZWRiYWNrIl0sImV4cCI6MTczNTY4OTYwMH0.g9N2QgCm8a6C-wAtixWvy7UuiERA-ji7V1x59yDRY94
	// chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT user-42 ["user feedback"] 2025-01-01T00:00:00Z <nil>
	// <nil>
	// token is for another identifier: it is for "user-42"
	// token expired at 2025-01-01T00:00:00Z
}
