package ratelimit_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/ratelimit"
)

// A per-address limit in front of a handler, and a per-token limit the
// handler applies once it has verified the token.
func Example() {
	perAddress, _ := ratelimit.New(ratelimit.Config{Rate: 10, Burst: 2, MaxKeys: 100_000, Key: "client address"})
	perToken, _ := ratelimit.New(ratelimit.Config{Rate: 2, Burst: 1, MaxKeys: 100_000, Key: "token"})
	clients := ratelimit.ClientAddress{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}

	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokenID := r.URL.Query().Get("token") // verified here, before it is a key
		if !perToken.AllowRequest(w, tokenID) {
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	h := perAddress.Middleware(api, func(r *http.Request) (string, bool) {
		addr, ok := clients.Of(r)
		return ratelimit.AddressKey(addr), ok
	})

	send := func(from, token string) {
		r := httptest.NewRequest(http.MethodPost, "/feedback?token="+token, nil)
		r.RemoteAddr = "127.0.0.1:4711" // a reverse proxy on the same host
		r.Header.Set("X-Forwarded-For", from)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		fmt.Println(from, token, rec.Code, rec.Header().Values("Retry-After"))
	}
	send("198.51.100.1", "t1")
	send("198.51.100.1", "t1") // the token's burst is spent
	send("198.51.100.1", "t2") // the address's burst is spent
	send("198.51.100.2", "t2")
	// Output:
	// 198.51.100.1 t1 202 []
	// 198.51.100.1 t1 429 [1]
	// 198.51.100.1 t2 429 [1]
	// 198.51.100.2 t2 202 []
}
