package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/cors"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/envflag"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/listener"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/ratelimit"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/extract"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/proxy"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/seek"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/sharedindex"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/store"
)

// envPrefix is the prefix of the environment variable each flag falls back to.
const envPrefix = "FEEDBACK_PROXY_"

const defaultPhoenixURL = "http://localhost:6006"

type options struct {
	cfg             proxy.Config
	memoryOnly      bool // --data-dir=-
	shutdownTimeout time.Duration
	logLevel        slog.Level
	logJSON         bool
}

// dataDirName is the default data directory's name under the user's state
// directory.
const dataDirName = "phoenix-feedback-proxy"

// defaultDataDir is where the proxy keeps its state when --data-dir is not
// given: the XDG base directory for state ("data that should persist
// between restarts"), $XDG_STATE_HOME or ~/.local/state. "" when neither
// can be known.
func defaultDataDir(getenv func(string) string) string {
	if d := getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, dataDirName)
	}
	if h := getenv("HOME"); filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "state", dataDirName)
	}
	return ""
}

// envName is the environment variable a flag falls back to.
func envName(flagName string) string { return envflag.Name(envPrefix, flagName) }

// parseConfig reads flags, then the environment for the flags not given.
// Phoenix's own client variables (PHOENIX_COLLECTOR_ENDPOINT,
// PHOENIX_ENDPOINT, PHOENIX_API_KEY, PHOENIX_CLIENT_HEADERS) are honoured
// as the Phoenix SDKs honour them.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (*options, error) {
	o := &options{}
	c := &o.cfg
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.SetOutput(out)

	fs.StringVar(&c.Receiver.GRPCAddr, "otlp-grpc-addr", otlp.DefaultGRPCAddr, "OTLP/gRPC listen address; point the app's OTLP gRPC exporter here (\"-\" disables)")
	fs.StringVar(&c.Receiver.HTTPAddr, "otlp-http-addr", otlp.DefaultHTTPAddr, "OTLP/HTTP listen address (POST /v1/traces); point the app's OTLP HTTP exporter here (\"-\" disables)")
	fs.Int64Var(&c.Receiver.MaxRequestBytes, "max-request-bytes", otlp.DefaultMaxRequestBytes, "largest OTLP request accepted, compressed and decompressed")
	fs.Int64Var(&c.Receiver.MaxInflightBytes, "max-inflight-bytes", otlp.DefaultMaxInflightBytes, "decompressed bytes of exports worked on at once (bounds memory under overload); "+
		"past it, apps are told to back off (HTTP 429 with Retry-After / gRPC ResourceExhausted)")
	fs.StringVar(&c.FeedbackAddr, "feedback-addr", proxy.DefaultFeedbackAddr, "listen address of the feedback API (POST /feedback, GET /feedback/{response_id})")
	fs.StringVar(&c.AdminAddr, "admin-addr", proxy.DefaultAdminAddr, "listen address of /metrics, /healthz and /readyz")
	fs.StringVar(&c.TLS.CertFile, "tls-cert-file", "", "certificate (PEM, followed by its intermediates) the OTLP/gRPC, OTLP/HTTP and feedback listeners serve TLS 1.2+ with, "+
		"read again when it changes; the admin listener stays plain. Empty: plain text")
	fs.StringVar(&c.TLS.KeyFile, "tls-key-file", "", "private key (PEM) of --tls-cert-file")
	fs.StringVar(&c.TLS.ClientCAFile, "tls-client-ca-file", "", "with --tls-cert-file: CA certificates (PEM) that every client of the OTLP listeners must present a certificate of (mutual TLS); the feedback listener, which browsers reach, asks for none; read again when it changes")

	phoenixOTLP := fs.String("phoenix-otlp-endpoint", "", "Phoenix OTLP/HTTP traces URL (default: PHOENIX_COLLECTOR_ENDPOINT, else "+defaultPhoenixURL+"/v1/traces)")
	phoenixURL := fs.String("phoenix-url", "", "Phoenix REST base URL for annotations (default: PHOENIX_ENDPOINT, else the OTLP endpoint's base)")
	var phoenixTLS tlsconfig.ClientConfig
	fs.StringVar(&phoenixTLS.CAFile, "phoenix-ca-file", "", "CA certificates (PEM) an https:// Phoenix's certificate must chain to, instead of the system's roots; read again when it changes")
	fs.StringVar(&phoenixTLS.CertFile, "phoenix-client-cert-file", "", "client certificate (PEM) presented to an https:// Phoenix that asks for one (mutual TLS); read again when it changes")
	fs.StringVar(&phoenixTLS.KeyFile, "phoenix-client-key-file", "", "private key (PEM) of --phoenix-client-cert-file")
	fs.TextVar(&c.Exporter.Compression, "phoenix-compression", otlp.Gzip, "`compression` of exports to Phoenix: gzip or none")
	fs.IntVar(&c.Exporter.CompressionLevel, "phoenix-compression-level", otlp.DefaultCompressionLevel,
		"gzip level of exports the proxy compresses itself, 1 (fastest) to 9 (smallest); a client's gzip body is forwarded as it came")
	fs.DurationVar(&c.Exporter.Timeout, "export-timeout", otlp.DefaultExportTimeout, "timeout of one export to Phoenix")

	fs.IntVar(&c.Index.MaxEntries, "index-max-entries", index.DefaultMaxEntries, "response ids remembered, the oldest evicted first; about 116 bytes each")
	fs.DurationVar(&c.Index.MaxAge, "index-max-age", index.DefaultMaxAge, "how long a response id stays resolvable")
	extraKeys := fs.String("index-extra-keys", "", "comma-separated span attribute keys whose values are indexed too (an app's own correlation key)")

	fs.IntVar(&c.Feedback.MaxPending, "feedback-max-pending", feedback.DefaultMaxPending, "feedbacks waiting for their span or for Phoenix; more get 429")
	fs.DurationVar(&c.Feedback.MaxAge, "feedback-max-age", feedback.DefaultMaxAge, "how long a feedback waits for its span and for Phoenix before it expires")
	fs.DurationVar(&c.Feedback.SyncWait, "feedback-sync-wait", feedback.DefaultSyncWait, "how long POST /feedback waits for the annotation when the span is known (negative: never)")
	fs.IntVar(&c.Feedback.MaxBytes, "feedback-max-bytes", feedback.DefaultMaxBytes,
		"memory for pending and remembered feedback; past it, pending feedback gets 429 and the oldest ended feedback is forgotten")
	fs.Int64Var(&c.FeedbackInflightBytes, "feedback-max-inflight-bytes", proxy.DefaultFeedbackInflightBytes,
		"bytes of POST /feedback bodies being handled at once; past it, 429 with Retry-After")
	fs.StringVar(&c.Feedback.Token, "feedback-token", "", "shared secret POST /feedback requires as \"Authorization: Bearer <token>\" (prefer the environment variable)")
	fs.StringVar(&c.TokenKeysFile, "token-keys-file", "", "key file of per-response tokens (one key a line, hex or base64, >= 32 bytes; the first signs, every line verifies; re-read when it changes): "+
		"web pages may then send feedback with a token scoped to one response, minted by POST /feedback/tokens or by the recipe in docs/tokens.md")
	corsOrigins := fs.String("cors-allowed-origins", "", "comma-separated origins (scheme://host[:port], e.g. https://app.example.com,http://localhost:3000) whose web pages may call the feedback API "+
		"from the browser, or a lone * for any; never with cookies (a page sends a per-response token). A request with another Origin is refused (403), "+
		"and no page may call POST /feedback/tokens. Empty: no CORS headers, so only pages of the feedback API's own origin can call it")
	trustedProxies := fs.String("trusted-proxies", joinPrefixes(proxy.DefaultTrustedProxies()), "comma-separated addresses or CIDRs of the reverse proxies in front of the feedback API "+
		"(for --feedback-rate-per-address): behind one of them, the client is the right-most address of X-Forwarded-For that is not one of them, "+
		"and their own requests (the app's backend on this host, by default) are not limited. \"-\": none, the connection's address is always the client")
	fs.Float64Var(&c.RateLimits.PerAddress, "feedback-rate-per-address", proxy.DefaultRatePerAddress, "requests a second one client address (IPv6: one /64) may make to the feedback API, "+
		"in bursts of --feedback-burst-per-address; past it, 429 with Retry-After. Requests with --feedback-token are never limited. Negative: no limit")
	fs.IntVar(&c.RateLimits.AddressBurst, "feedback-burst-per-address", proxy.DefaultAddressBurst, "requests one client address may make to the feedback API at once")
	fs.Float64Var(&c.RateLimits.PerToken, "feedback-rate-per-token", proxy.DefaultRatePerToken, "requests a second one per-response token may make, "+
		"in bursts of --feedback-burst-per-token; past it, 429 with Retry-After. Negative: no limit")
	fs.IntVar(&c.RateLimits.TokenBurst, "feedback-burst-per-token", proxy.DefaultTokenBurst, "requests one per-response token may make at once")
	fs.IntVar(&c.RateLimits.MaxKeys, "feedback-rate-max-keys", proxy.DefaultRateLimitMaxKeys, fmt.Sprintf(
		"client addresses, and tokens, whose rate each limit remembers, the least recently seen forgotten first; at most %d bytes each", ratelimit.BucketBytes))

	fs.StringVar(&c.DataDir, "data-dir", defaultDataDir(getenv), "directory that keeps the pending feedback, the response-id index and, while Phoenix is down, the exports "+
		"across restarts, SIGKILL included ("+store.FileName+" and "+proxy.QueueDir+"/; created if missing; one proxy per directory). "+
		"Default: $XDG_STATE_HOME/"+dataDirName+", else ~/.local/state/"+dataDirName+". "+
		"\"-\": memory only, which loses pending feedback and the index on restart and leaves Phoenix outages to the app's retries")
	fs.Int64Var(&c.QueueMaxBytes, "queue-max-bytes", proxy.DefaultQueueMaxBytes, "with --data-dir: disk budget for exports held while Phoenix is down or refusing; "+
		"when full, apps are told to back off (HTTP 429 / gRPC ResourceExhausted)")
	fs.BoolVar(&c.DataSync, "data-sync", false, "fsync every write to the data directory, so it also survives a power loss or kernel crash "+
		"(costs a few milliseconds of fsync per POST /feedback and per export with an LLM span); without it a crash of the proxy still loses nothing")

	fs.StringVar(&c.Shared.URL, "redis-url", "", "Redis or Valkey that replicas share the response-id index on (redis://[user:password@]host:port/db, or rediss:// for TLS; "+
		"prefer the environment variable, which keeps the password out of ps): feedback then resolves whichever replica receives it. Empty: this replica's own index only")
	fs.DurationVar(&c.Shared.Timeout, "redis-timeout", sharedindex.DefaultTimeout, "with --redis-url: timeout of every call to Redis (the export path never waits for one)")
	fs.IntVar(&c.Shared.MaxBacklog, "redis-max-backlog", sharedindex.DefaultMaxBacklog, "with --redis-url: index entries kept to be written while Redis is unreachable; past it the oldest are not written (this replica still resolves them)")
	noLookup := fs.Bool("no-phoenix-lookup", false, "never ask Phoenix for the span of a response id no index holds (a replica that never saw the span, an index lost with its data directory)")
	fs.Float64Var(&c.PhoenixLookup.Rate, "phoenix-lookup-rate", seek.DefaultPhoenixRate, "most lookups a second this replica makes in Phoenix for feedback no index resolves (one response id in one project, one to a few HTTP requests, each a scan of the project), whatever the feedback received")
	lookupProjects := fs.String("phoenix-lookup-projects", "", fmt.Sprintf("comma-separated Phoenix projects the lookup asks (default: every project Phoenix lists, up to %d)", seek.DefaultPhoenixMaxProjects))

	fs.DurationVar(&c.Limits.ReadHeaderTimeout, "read-header-timeout", listener.DefaultReadHeaderTimeout,
		"OTLP, feedback and admin listeners: time a client has to send a request's header (on gRPC, to set up its connection)")
	fs.DurationVar(&c.Limits.ReadTimeout, "read-timeout", listener.DefaultReadTimeout,
		"OTLP, feedback and admin listeners: time a client has to send a whole request, body included; a stalled or trickling body is cut off then and its memory given back")
	fs.DurationVar(&c.Limits.IdleTimeout, "idle-timeout", listener.DefaultIdleTimeout,
		"OTLP, feedback and admin listeners: how long a keep-alive connection may stay idle (on gRPC: with no call in progress)")
	fs.IntVar(&c.Limits.MaxConnections, "max-connections", listener.DefaultMaxConnections,
		fmt.Sprintf("connections open at once on each of the OTLP/gRPC, OTLP/HTTP and feedback listeners; more are closed at once (the admin listener has %d of its own)", proxy.AdminMaxConnections))

	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long SIGTERM waits for exports and annotations in flight; feedback still pending then stays in --data-dir for the next start")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")

	fs.Usage = func() {
		fmt.Fprintf(out, `proxy passes OTLP traces through to Arize Phoenix and attaches user feedback
to the LLM span that produced a response, by the provider's response id.

Point your app's OTLP exporter at this proxy instead of Phoenix
(OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318, or localhost:4317 for gRPC),
then send feedback with only the response id:

  curl -X POST localhost:8080/feedback -d '{"response_id":"chatcmpl-...","thumbs":"up"}'

By default the pending feedback and the response-id index and, while Phoenix is
down or refusing, the exports, are kept in a data directory: a restart (even
kill -9) resumes them, and exports wait in a disk queue and go on, in order,
when Phoenix is back. --data-dir=- keeps everything in memory instead: a
restart loses it, and an export is answered only once Phoenix answered it.

Several replicas of an app, each with this proxy beside it: give them all the
same --redis-url (Redis or Valkey) and feedback resolves whichever replica
receives it. Without one, a replica asks Phoenix for spans it never saw
(slower; --phoenix-lookup-rate bounds it).

Every flag can also be set by the environment variable %s<FLAG>, e.g.
%s. Phoenix's client variables are honoured too:
PHOENIX_COLLECTOR_ENDPOINT, PHOENIX_ENDPOINT, PHOENIX_API_KEY (sent as
Authorization: Bearer) and PHOENIX_CLIENT_HEADERS (k=v,k2=v2).

TLS: --tls-cert-file and --tls-key-file serve the OTLP and feedback listeners
over TLS; https:// Phoenix URLs take --phoenix-ca-file for a private CA and
--phoenix-client-cert-file/--phoenix-client-key-file for mutual TLS. Every
certificate file is read again when it changes (a broken one is logged and the
previous one kept), so a rotation needs no restart.

Flags:
`, envPrefix, envName("feedback-addr"))
		fs.PrintDefaults()
	}

	if err := envflag.Parse(fs, args, envPrefix, getenv); err != nil {
		return nil, err
	}
	switch c.DataDir {
	case "":
		if defaultDataDir(getenv) != "" {
			return nil, errors.New("-data-dir: empty; give a directory, or -data-dir=- to keep everything in memory")
		}
		return nil, errors.New("-data-dir: no default data directory (neither XDG_STATE_HOME nor HOME is set); " +
			"give one, or -data-dir=- to keep everything in memory")
	case "-":
		c.DataDir, o.memoryOnly = "", true
	}

	otlpEndpoint, restURL, err := phoenixEndpoints(*phoenixOTLP, *phoenixURL, getenv)
	if err != nil {
		return nil, err
	}
	headers, err := parseHeaders(getenv("PHOENIX_CLIENT_HEADERS"))
	if err != nil {
		return nil, fmt.Errorf("PHOENIX_CLIENT_HEADERS: %w", err)
	}
	if key := getenv("PHOENIX_API_KEY"); key != "" {
		headers["Authorization"] = "Bearer " + key
	}
	c.Exporter.Endpoint, c.Exporter.Headers = otlpEndpoint, headers
	c.Phoenix.BaseURL, c.Phoenix.Headers = restURL, headers
	if err := setTLS(c, phoenixTLS); err != nil {
		return nil, err
	}
	if *extraKeys != "" {
		for _, k := range strings.Split(*extraKeys, ",") {
			if k = strings.TrimSpace(k); k != "" {
				c.Extractor.ExtraKeys = append(c.Extractor.ExtraKeys, k)
			}
		}
		if n := len(c.Extractor.ExtraKeys); n > extract.MaxExtraKeys {
			return nil, fmt.Errorf("-index-extra-keys: %d keys; expected at most %d", n, extract.MaxExtraKeys)
		}
	}
	if err := setFeedbackGuard(c, *corsOrigins, *trustedProxies); err != nil {
		return nil, err
	}
	c.NoPhoenixLookup = *noLookup
	for _, p := range strings.Split(*lookupProjects, ",") {
		if p = strings.TrimSpace(p); p != "" {
			c.PhoenixLookup.Projects = append(c.PhoenixLookup.Projects, p)
		}
	}
	if c.PhoenixLookup.Rate <= 0 {
		return nil, fmt.Errorf("-phoenix-lookup-rate %g: expected a positive number of queries a second (-no-phoenix-lookup turns the lookup off)", c.PhoenixLookup.Rate)
	}
	if c.Shared.URL != "" {
		if err := c.Shared.Validate(); err != nil {
			return nil, fmt.Errorf("-redis-url: %w", err)
		}
	}
	if err := o.logLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level %q: expected debug, info, warn or error", *logLevel)
	}
	switch *logFormat {
	case "text":
	case "json":
		o.logJSON = true
	default:
		return nil, fmt.Errorf("-log-format %q: expected text or json", *logFormat)
	}
	return o, nil
}

// phoenixEndpoints works out the OTLP traces URL and the REST base URL.
// PHOENIX_COLLECTOR_ENDPOINT is a base URL or one ending in /v1/traces, as
// the Phoenix SDKs take it.
func phoenixEndpoints(otlpFlag, restFlag string, getenv func(string) string) (string, string, error) {
	collector := otlpFlag
	if collector == "" {
		collector = getenv("PHOENIX_COLLECTOR_ENDPOINT")
	}
	if collector == "" {
		collector = defaultPhoenixURL
	}
	collector = strings.TrimRight(collector, "/")
	base, hasPath := strings.CutSuffix(collector, otlp.TracesPath)
	if !hasPath {
		collector += otlp.TracesPath
	}
	rest := restFlag
	if rest == "" {
		rest = getenv("PHOENIX_ENDPOINT")
	}
	if rest == "" {
		rest = base
	}
	for name, u := range map[string]string{"Phoenix OTLP endpoint": collector, "Phoenix REST URL": rest} {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return "", "", fmt.Errorf("%s %q: expected an http:// or https:// URL", name, u)
		}
	}
	return collector, strings.TrimRight(rest, "/"), nil
}

// parseHeaders reads "k=v,k2=v2" with URL-escaped values, the format of
// PHOENIX_CLIENT_HEADERS and OTEL_EXPORTER_OTLP_HEADERS.
func parseHeaders(s string) (map[string]string, error) {
	h := map[string]string{}
	for _, pair := range strings.Split(s, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: expected key=value", pair)
		}
		uv, err := url.QueryUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("%q: %w", pair, err)
		}
		h[k] = uv
	}
	return h, nil
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// setFeedbackGuard reads the CORS and rate limit flags into c.
func setFeedbackGuard(c *proxy.Config, origins, trusted string) error {
	var err error
	if c.CORSAllowedOrigins, err = cors.ParseOrigins(origins); err != nil {
		return fmt.Errorf("-cors-allowed-origins: %w", err)
	}
	c.TrustedProxies = []netip.Prefix{} // none, unless listed
	if trusted = strings.TrimSpace(trusted); trusted != "-" {
		for _, s := range strings.Split(trusted, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			p, err := netip.ParsePrefix(s)
			if err != nil {
				a, aerr := netip.ParseAddr(s)
				if aerr != nil {
					return fmt.Errorf("-trusted-proxies: %q: expected an address (10.0.0.7) or a CIDR (10.0.0.0/8), or - for none", s)
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			c.TrustedProxies = append(c.TrustedProxies, p.Masked())
		}
	}
	l := c.RateLimits
	for _, f := range []struct {
		name string
		rate float64
	}{{"feedback-rate-per-address", l.PerAddress}, {"feedback-rate-per-token", l.PerToken}} {
		// Zero would be the default in proxy.Config: refuse it rather than
		// give the default to someone who asked for nothing.
		if f.rate == 0 || math.IsNaN(f.rate) || math.IsInf(f.rate, 0) {
			return fmt.Errorf("-%s %g: expected a positive number of requests a second, or a negative one for no limit", f.name, f.rate)
		}
	}
	for _, f := range []struct {
		name string
		n    int
	}{{"feedback-burst-per-address", l.AddressBurst}, {"feedback-burst-per-token", l.TokenBurst}, {"feedback-rate-max-keys", l.MaxKeys}} {
		if f.n < 1 {
			return fmt.Errorf("-%s %d: expected at least 1", f.name, f.n)
		}
	}
	return nil
}
