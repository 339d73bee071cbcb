package main

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     func(string) string
		wantErr string
		check   func(t *testing.T, o *options)
	}{
		{
			name: "defaults",
			env:  env(),
			check: func(t *testing.T, o *options) {
				want := options{
					feedbackURL: "http://localhost:8080", phoenixURL: "http://localhost:6006", phoenixUIURL: "http://localhost:6006",
					model: "gpt-4o-mini", question: "Answer in up to 3 words: Which ocean contains Bouvet Island?", wait: 30 * time.Second,
				}
				if *o != want {
					t.Errorf("got %+v, want %+v", *o, want)
				}
			},
		},
		{
			name: "answer implies feedback",
			args: []string{"--answer", "Y"},
			env:  env(),
			check: func(t *testing.T, o *options) {
				if !o.feedback || o.answer != "y" {
					t.Errorf("feedback %v answer %q, want true y", o.feedback, o.answer)
				}
			},
		},
		{
			name: "answer no",
			args: []string{"--answer=no"},
			env:  env(),
			check: func(t *testing.T, o *options) {
				if !o.feedback || o.answer != "n" {
					t.Errorf("feedback %v answer %q, want true n", o.feedback, o.answer)
				}
			},
		},
		{name: "bad answer", args: []string{"--answer", "maybe"}, env: env(), wantErr: `--answer "maybe": expected y or n`},
		{
			name: "environment fills flags not given",
			args: []string{"--feedback-url", "http://flag:1/"},
			env:  env("DEMO_FEEDBACK_URL", "http://env:2", "DEMO_ANSWER", "n", "DEMO_WAIT", "5s", "DEMO_FEEDBACK", "true"),
			check: func(t *testing.T, o *options) {
				if o.feedbackURL != "http://flag:1" {
					t.Errorf("feedbackURL %q: the flag must win over the environment, without the trailing slash", o.feedbackURL)
				}
				if o.answer != "n" || !o.feedback || o.wait != 5*time.Second {
					t.Errorf("answer %q feedback %v wait %s, want n true 5s", o.answer, o.feedback, o.wait)
				}
			},
		},
		{name: "bad env value names the variable", env: env("DEMO_WAIT", "soon"), wantErr: `DEMO_WAIT="soon"`},
		{
			name: "Phoenix from PHOENIX_ENDPOINT, UI from its flag",
			args: []string{"--phoenix-ui-url", "http://localhost:6006/"},
			env:  env("PHOENIX_ENDPOINT", "http://phoenix:6006"),
			check: func(t *testing.T, o *options) {
				if o.phoenixURL != "http://phoenix:6006" || o.phoenixUIURL != "http://localhost:6006" {
					t.Errorf("phoenix %q ui %q", o.phoenixURL, o.phoenixUIURL)
				}
			},
		},
		{
			name: "token from the proxy's variable",
			env:  env("FEEDBACK_PROXY_FEEDBACK_TOKEN", "s3cret"),
			check: func(t *testing.T, o *options) {
				if o.feedbackToken != "s3cret" {
					t.Errorf("token %q", o.feedbackToken)
				}
			},
		},
		{name: "URL without scheme", args: []string{"--feedback-url", "localhost:8080"}, env: env(), wantErr: `--feedback-url "localhost:8080": expected an http:// or https:// URL`},
		{name: "empty model", args: []string{"--model", " "}, env: env(), wantErr: "--model"},
		{name: "negative wait", args: []string{"--wait", "-1s"}, env: env(), wantErr: "--wait"},
		{name: "arguments", args: []string{"y"}, env: env(), wantErr: `unexpected arguments ["y"]`},
		{name: "unknown flag", args: []string{"--color"}, env: env(), wantErr: "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseOptions(tt.args, tt.env, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, o)
		})
	}
}

func TestHelp(t *testing.T) {
	var out strings.Builder
	_, err := parseOptions([]string{"--help"}, env(), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"OPENAI_API_KEY", "OTEL_EXPORTER_OTLP_ENDPOINT", "DEMO_ANSWER", "make demo", "-feedback-url"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not mention %s", want)
		}
	}
}

func TestOTLPTarget(t *testing.T) {
	tests := []struct {
		name    string
		env     func(string) string
		want    exportTarget
		wantErr string
	}{
		{name: "default: the proxy over HTTP", env: env(), want: exportTarget{protocol: "http/protobuf", defaultEndpoint: "http://localhost:4318/v1/traces"}},
		{name: "grpc", env: env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), want: exportTarget{protocol: "grpc", defaultEndpoint: "http://localhost:4317"}},
		{
			name: "traces variables win",
			env: env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc",
				"OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4317"),
			want: exportTarget{protocol: "grpc", endpoint: "http://b:4317", defaultEndpoint: "http://localhost:4317"},
		},
		{name: "json", env: env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"), wantErr: "use http/protobuf or grpc"},
		{name: "unknown", env: env("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"), wantErr: "expected http/protobuf or grpc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := otlpTarget(tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
