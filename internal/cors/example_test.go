package cors_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/cors"
)

// A page of https://app.example.com asks whether it may POST JSON with a
// bearer token; a page of another origin asks the same.
func Example() {
	origins, err := cors.ParseOrigins("https://App.Example.com:443, http://localhost:3000")
	if err != nil {
		panic(err)
	}
	policy, err := cors.New(cors.Config{
		AllowedOrigins: origins,
		AllowedMethods: []string{"POST", "GET"},
		AllowedHeaders: []string{"Content-Type", "Authorization"},
		ExposedHeaders: []string{"Retry-After"},
	})
	if err != nil {
		panic(err)
	}
	api := policy.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	}))
	for _, origin := range []string{"https://app.example.com", "https://other.example"} {
		r := httptest.NewRequest(http.MethodOptions, "/feedback", nil)
		r.Header.Set("Origin", origin)
		r.Header.Set("Access-Control-Request-Method", "POST")
		r.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, r)
		fmt.Printf("%s %d %q %q\n", origin, rec.Code, rec.Header().Get("Access-Control-Allow-Origin"), rec.Header().Get("Access-Control-Allow-Methods"))
	}
	fmt.Println(origins)
	// Output:
	// https://app.example.com 204 "https://app.example.com" "POST, GET"
	// https://other.example 403 "" ""
	// [https://app.example.com http://localhost:3000]
}
