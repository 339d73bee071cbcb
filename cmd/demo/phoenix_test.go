package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPhoenixCheck(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		wantErr string
	}{
		{name: "Phoenix", handler: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/healthz" {
				t.Errorf("path %s", r.URL.Path)
			}
			_, _ = io.WriteString(w, "OK")
		}},
		{name: "something else", handler: func(w http.ResponseWriter, _ *http.Request) {
			http.NotFound(w, nil)
		}, wantErr: "not Phoenix's OK: is --phoenix-url Phoenix?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			err := newPhoenixClient(srv.URL, srv.URL, "").check(context.Background())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestPhoenixNotRunning(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close()
	err := newPhoenixClient(base, base, "").check(context.Background())
	want := "Phoenix is not running on " + strings.TrimPrefix(base, "http://") + ": run `make demo`, or start it with `scripts/phoenix.sh start`"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err %v, want one starting with %q", err, want)
	}
}

func TestPhoenixProjectID(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("Authorization"); got != "Bearer key" {
			t.Errorf("Authorization %q", got)
		}
		// Two pages, as GET /v1/projects pages with a cursor.
		if r.URL.Query().Get("cursor") == "" {
			_, _ = io.WriteString(w, `{"data":[{"name":"default","description":"Default project","id":"UHJvamVjdDox"}],"next_cursor":"UHJvamVjdDoy"}`)
			return
		}
		if r.URL.Query().Get("cursor") != "UHJvamVjdDoy" {
			t.Errorf("cursor %q", r.URL.Query().Get("cursor"))
		}
		_, _ = io.WriteString(w, `{"data":[{"name":"shop","id":"UHJvamVjdDoy"}],"next_cursor":null}`)
	}))
	defer srv.Close()
	p := newPhoenixClient(srv.URL, "http://ui", "key")
	for name, want := range map[string]string{"default": "UHJvamVjdDox", "shop": "UHJvamVjdDoy"} {
		got, err := p.projectID(context.Background(), name)
		if err != nil || got != want {
			t.Errorf("projectID(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := p.projectID(context.Background(), "nope"); err == nil || !strings.Contains(err.Error(), `no project "nope"`) {
		t.Errorf("err %v", err)
	}
}

func TestPhoenixURLs(t *testing.T) {
	if got, want := spanURL("http://localhost:6006", "00f067aa0ba902b7"), "http://localhost:6006/redirects/spans/00f067aa0ba902b7"; got != want {
		t.Errorf("spanURL = %s, want %s", got, want)
	}
	if got, want := traceURL("http://localhost:6006", "UHJvamVjdDox", "4bf92f3577b34da6a3ce929d0e0e4736"),
		"http://localhost:6006/projects/UHJvamVjdDox/traces/4bf92f3577b34da6a3ce929d0e0e4736"; got != want {
		t.Errorf("traceURL = %s, want %s", got, want)
	}
}
