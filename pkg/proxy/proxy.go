package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/budget"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/listener"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/tlsconfig"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/evaluation"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/extract"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/forward"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/queue"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/seek"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/sharedindex"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/store"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/token"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/widget"
)

// Default listen addresses of the HTTP APIs.
const (
	DefaultFeedbackAddr = "localhost:8080"
	DefaultAdminAddr    = "localhost:8888"
)

// Config is the whole proxy's configuration.
type Config struct {
	Receiver otlp.ReceiverConfig
	// Exporter sends spans to Phoenix's OTLP/HTTP endpoint.
	Exporter otlp.ExporterConfig
	// Index bounds the response-id index. Its StoreDelay, zero here,
	// becomes DefaultIndexStoreDelay unless DataSync is set (then every
	// Add's changes are written before it returns).
	Index     index.Config
	Extractor extract.Extractor
	Feedback  feedback.Config
	// Phoenix is the REST API annotations are written to.
	Phoenix phoenix.Config
	// FeedbackAddr serves POST /feedback; "" means DefaultFeedbackAddr.
	FeedbackAddr string
	// AdminAddr serves /metrics, /healthz and /readyz; "" means
	// DefaultAdminAddr.
	AdminAddr string
	// TLS, when set, serves the OTLP/gRPC, OTLP/HTTP and feedback listeners
	// over TLS, the certificate (and client CA) read again when the files
	// change. The client CA applies to the OTLP listeners only: the
	// feedback listener, which browsers reach, asks for no client
	// certificate. The admin listener stays plain: probes and scrapers reach it
	// without certificates, and it serves no spans, feedback or secrets.
	// Receiver.TLS, when set, wins for the OTLP listeners.
	TLS tlsconfig.ServerConfig
	// FeedbackInflightBytes bounds the bytes of POST /feedback bodies
	// being handled at once; past it, 429 with Retry-After. Zero means
	// DefaultFeedbackInflightBytes.
	FeedbackInflightBytes int64
	// CORSAllowedOrigins are the origins (scheme://host[:port]) whose web
	// pages may call the feedback API from the browser, as
	// internal/cors.NormalizeOrigin reads them; a lone "*" lets any origin
	// call. Never with credentials (cookies). A request with an Origin not
	// listed, preflighted or not, is refused 403, and no page may call
	// POST /feedback/tokens. Empty: no CORS header is sent, and a request
	// other than GET or HEAD whose Origin is not the host it was sent to is
	// refused 403 (a browser sends other sites' simple requests without a
	// preflight), so only pages of the feedback API's own host can call it.
	// GET /widget.js is every origin's either way.
	CORSAllowedOrigins []string
	// TokenKeysFile, when set, is the key file of per-response tokens
	// (pkg/token: one key a line, the first signs, all verify): POST
	// /feedback takes such tokens within their scope, POST /feedback/tokens
	// mints them. The file is looked at every token.DefaultRecheck and
	// re-read when it changed, so that keys rotate without a restart.
	TokenKeysFile string
	// RateLimits bound the feedback API's requests per client address and
	// per per-response token; the zero value takes the defaults.
	RateLimits RateLimits
	// TrustedProxies are the reverse proxies in front of the feedback
	// API whose X-Forwarded-For names the client for the rate limit per
	// address (the right-most address in it that is not one of them; each
	// must append to the header or overwrite it, never pass a client's on
	// as it came); their own requests, with no X-Forwarded-For, are not
	// limited. nil means DefaultTrustedProxies
	// (loopback); an empty, non-nil slice trusts none, as an empty
	// http.Server.TLSNextProto turns HTTP/2 off: the connection's peer is
	// then always the client.
	TrustedProxies []netip.Prefix
	// Limits bound what one client can hold of the OTLP and feedback
	// listeners (connections, and the time to send a request or stay
	// idle); Receiver.Limits, when set, wins for the OTLP ones. The admin
	// listener has the same timeouts and AdminMaxConnections, so that a
	// flood on the other ports never locks the operator out.
	Limits listener.Limits
	// DataDir keeps the pending feedback, the response-id index and, while
	// Phoenix is unavailable, the exports, across restarts (store.FileName
	// and QueueDir in it, created if missing): a feedback is on disk before
	// POST /feedback answers, an export before the app is told it was
	// taken. "" keeps everything in memory only: a restart loses the
	// pending feedback and the index, and an export is answered only once
	// Phoenix answered it (the app's exporter must retry through an
	// outage). cmd/proxy sets a directory by default.
	DataDir string
	// Shared, when its URL is set, is the index replicas share on Redis or
	// Valkey: every entry this replica indexes is written there, and
	// feedback for a response this replica never saw resolves through it
	// (pkg/sharedindex, pkg/seek). Its zero MaxAge means Index.MaxAge,
	// its zero VoteTTL Feedback.MaxAge.
	Shared sharedindex.Config
	// PhoenixLookup bounds the fallback that asks Phoenix for the span of
	// a response id no index holds (a replica that never saw it, with no
	// shared index or one that misses too; an index lost with its data
	// directory). NoPhoenixLookup turns it off.
	PhoenixLookup   seek.PhoenixConfig
	NoPhoenixLookup bool
	// DataSync makes every write to DataDir wait for the disk (fsync), so
	// that it survives a power loss too, not only a crash of the proxy.
	DataSync bool
	// QueueMaxBytes is the budget of the disk queue (QueueDir in DataDir)
	// that holds exports while Phoenix is down or refusing; when it is
	// full, apps are told to back off (429 / ResourceExhausted). Zero means
	// DefaultQueueMaxBytes. Without a DataDir there is no queue: an export
	// is answered only once Phoenix answered it.
	QueueMaxBytes int64
}

// Disk queue defaults.
const (
	QueueDir             = "queue"
	DefaultQueueMaxBytes = 256 << 20
)

// DefaultIndexStoreDelay is how long an index entry may wait to be written
// to the data directory with the others of that time (index.Config
// StoreDelay), unless DataSync asks for every write to be on the disk when
// it returns: a crash forgets the entries of the last 100 ms at most, and
// their feedback resolves through the Phoenix lookup.
const DefaultIndexStoreDelay = 100 * time.Millisecond

// withDefaults returns c with the zero fields the proxy itself reads set
// to their defaults; each part's Config fills in its own, but for the
// shared index's ages, which follow the index's and the feedback's.
func (c Config) withDefaults() Config {
	if c.FeedbackAddr == "" {
		c.FeedbackAddr = DefaultFeedbackAddr
	}
	if c.AdminAddr == "" {
		c.AdminAddr = DefaultAdminAddr
	}
	if c.FeedbackInflightBytes == 0 {
		c.FeedbackInflightBytes = DefaultFeedbackInflightBytes
	}
	if c.QueueMaxBytes == 0 {
		c.QueueMaxBytes = DefaultQueueMaxBytes
	}
	if c.TrustedProxies == nil {
		c.TrustedProxies = DefaultTrustedProxies()
	}
	if c.Index.StoreDelay == 0 && !c.DataSync {
		c.Index.StoreDelay = DefaultIndexStoreDelay
	}
	c.RateLimits = c.RateLimits.WithDefaults()
	c.Limits = c.Limits.WithDefaults()
	c.Shared.MaxAge = cmp.Or(c.Shared.MaxAge, c.Index.MaxAge, index.DefaultMaxAge)
	c.Shared.VoteTTL = cmp.Or(c.Shared.VoteTTL, c.Feedback.MaxAge, feedback.DefaultMaxAge)
	return c
}

// Validate reports every setting that cannot work, the parts' included,
// before anything is built.
func (c Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(c.Receiver.Validate())
	add(c.Exporter.Validate())
	add(c.Index.Validate())
	add(c.Feedback.Validate())
	add(c.Limits.Validate())
	add(c.RateLimits.WithDefaults().Validate())
	add(c.TLS.Validate())
	if c.Shared.URL != "" {
		add(c.Shared.Validate())
	}
	if c.FeedbackInflightBytes < 0 {
		add(fmt.Errorf("proxy: FeedbackInflightBytes must be positive, got %d", c.FeedbackInflightBytes))
	}
	if c.QueueMaxBytes < 0 {
		add(fmt.Errorf("proxy: QueueMaxBytes must be positive, got %d", c.QueueMaxBytes))
	}
	return errors.Join(errs...)
}

// AdminMaxConnections caps the connections open on the admin listener, kept
// apart from the others' so that probes and metrics stay reachable.
const AdminMaxConnections = 32

// Proxy is the running sidecar.
type Proxy struct {
	cfg      Config
	log      *slog.Logger
	reg      *prometheus.Registry
	index    *index.Index
	feedback *feedback.Service
	guard    *feedbackGuard // CORS and rate limits in front of feedback
	receiver *otlp.Receiver
	store    *store.Store // nil without a DataDir, or before Start
	exporter *otlp.Exporter
	queue    *queue.Queue // nil without a DataDir, or before Start
	// queued takes the exports when there is a DataDir (chosen in New); nil
	// when they go straight to Phoenix.
	queued *forward.Queued
	// shared and seeker are nil without a shared index, and without both
	// it and the Phoenix fallback.
	shared *sharedindex.Index
	seeker *seek.Seeker
	lookup *seek.PhoenixSource // nil with NoPhoenixLookup

	mu       sync.Mutex
	warnings []string // what /readyz reports besides being ready

	feedbackSrv, adminSrv *http.Server
	feedbackLn, adminLn   net.Listener
	wg                    sync.WaitGroup
	ready                 atomic.Bool
	clients               []*http.Client
	tls                   *tlsFiles
}

// New builds the proxy from cfg; it does no I/O.
func New(cfg Config, log *slog.Logger) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	tlsFiles, err := newTLSFiles(cfg, reg, log)
	if err != nil {
		return nil, err
	}
	// The proxy owns the HTTP clients to Phoenix, so that Shutdown can close
	// their idle connections.
	exportClient, err := tlsFiles.httpClient(0, cfg.Exporter.TLS)
	if err != nil {
		return nil, err
	}
	restClient, err := tlsFiles.httpClient(phoenix.DefaultTimeout, cfg.Phoenix.TLS)
	if err != nil {
		return nil, err
	}
	if cfg.Exporter.Client == nil {
		cfg.Exporter.Client = exportClient
	}
	if cfg.Phoenix.HTTPClient == nil {
		cfg.Phoenix.HTTPClient = restClient
	}
	otlpMetrics := otlp.NewMetrics(reg)
	exporter, err := otlp.NewExporter(cfg.Exporter, otlpMetrics)
	if err != nil {
		return nil, err
	}
	ix, err := index.New(cfg.Index, index.NewMetrics(reg))
	if err != nil {
		return nil, err
	}
	client, err := phoenix.New(cfg.Phoenix)
	if err != nil {
		return nil, err
	}
	guard, err := newFeedbackGuard(cfg, reg)
	if err != nil {
		return nil, err
	}
	if cfg.Feedback.TokenLimiter == nil {
		cfg.Feedback.TokenLimiter = guard.tokenLimiter()
	}
	if cfg.TokenKeysFile != "" && cfg.Feedback.Tokens == nil {
		keys, err := openTokenKeys(cfg.TokenKeysFile, log)
		if err != nil {
			return nil, err
		}
		cfg.Feedback.Tokens = keys
	}
	fb, err := feedback.New(cfg.Feedback, ix, client, feedback.NewMetrics(reg), log.With("component", "feedback"))
	if err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, log: log, reg: reg, index: ix, feedback: fb, guard: guard,
		exporter: exporter, clients: []*http.Client{exportClient, restClient}}
	if err := p.newSeeker(client); err != nil {
		return nil, err
	}
	// The path of a span, decided here once: straight to Phoenix, or
	// through the disk queue while Phoenix is unavailable.
	x := &indexer{extractor: cfg.Extractor, index: ix, indexed: p.indexed}
	var consumer otlp.Consumer = direct{upstream: exporter, delivered: x.delivered}
	if cfg.DataDir != "" {
		p.queued = forward.NewQueued(exporter, x.delivered, reg, log.With("component", "queue"))
		consumer = p.queued
	}
	if cfg.Receiver.Limits == (listener.Limits{}) {
		cfg.Receiver.Limits = cfg.Limits
	}
	if cfg.Receiver.TLS == nil {
		cfg.Receiver.TLS = tlsFiles.server
	}
	p.tls = tlsFiles
	// The path of an evaluation event: OTLP logs -> the feedback service,
	// as POST /feedback.
	evaluations := evaluation.NewConsumer(fb, cfg.Feedback.Token, evaluation.NewMetrics(reg), log.With("component", "evaluation"))
	if p.receiver, err = otlp.NewReceiver(cfg.Receiver, consumer, otlpMetrics, log.With("component", "receiver"),
		otlp.WithLogs(evaluations)); err != nil {
		return nil, err
	}
	return p, nil
}

// newHTTPClient returns a client with a transport of its own. timeout 0
// leaves the timeout to the caller's context (the exporter sets one per
// request).
func newHTTPClient(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 32
	return &http.Client{Transport: tr, Timeout: timeout}
}

// Start opens the data directory, if any, and resumes what it kept, then
// binds every listener, so a port in use is reported here, then serves in
// the background. On error nothing is left running.
func (p *Proxy) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Shutdown(ctx))
		}
	}()
	if err = p.tls.load(); err != nil {
		return err
	}
	if err = p.restore(); err != nil {
		return err
	}
	if p.adminLn, err = listener.Listen(ctx, p.cfg.AdminAddr, AdminMaxConnections, nil); err != nil {
		return fmt.Errorf("admin listener on %s: %w", p.cfg.AdminAddr, err)
	}
	p.adminSrv = p.cfg.Limits.HTTPServer(p.adminHandler())
	p.serve("admin", p.adminSrv, p.adminLn, nil)

	if p.feedbackLn, err = listener.Listen(ctx, p.cfg.FeedbackAddr, p.cfg.Limits.MaxConnections, nil); err != nil {
		return fmt.Errorf("feedback listener on %s: %w", p.cfg.FeedbackAddr, err)
	}
	bodies := budget.New(p.cfg.FeedbackInflightBytes, nil)
	feedbackMux := http.NewServeMux()
	feedbackMux.Handle("/", boundBodies(p.feedback.Handler(), bodies, feedback.MaxBodyBytes))
	feedbackMux.Handle("/widget.js", widget.Handler()) // it answers other methods 405 itself
	p.feedbackSrv = p.cfg.Limits.HTTPServer(p.guard.wrap(feedbackMux))
	// The client CA is the OTLP listeners' alone: browsers (the widget)
	// reach the feedback API, and have no client certificate to present.
	p.serve("feedback", p.feedbackSrv, p.feedbackLn, p.tls.server.WithoutClientCerts())

	if err = p.receiver.Start(ctx); err != nil {
		return err
	}
	p.startSeeker()
	p.ready.Store(true)
	p.log.Info("proxy started",
		"otlp_grpc", addrString(p.receiver.GRPCAddr()), "otlp_http", addrString(p.receiver.HTTPAddr()),
		"feedback", addrString(p.feedbackLn.Addr()), "admin", addrString(p.adminLn.Addr()),
		"phoenix_otlp", p.cfg.Exporter.Endpoint, "phoenix_rest", p.cfg.Phoenix.BaseURL, "tls", p.tls.server != nil)
	return nil
}

// restore opens the store and loads the index first, so that the feedback
// restored next resolves against it.
func (p *Proxy) restore() error {
	if p.cfg.DataDir == "" {
		p.log.Warn("memory only: no data directory, so a restart loses the pending feedback and the response-id index, " +
			"and while Phoenix is unavailable exports are refused (503) and survive only if the app's exporter retries")
		return nil
	}
	st, err := store.Open(p.cfg.DataDir, store.Options{Sync: p.cfg.DataSync, Logger: p.log.With("component", "store")})
	if err != nil {
		return err
	}
	p.store = st
	sm := newStoreMetrics(p.reg)
	if rec := st.Recovery(); rec != nil {
		// The store logged it; the operator sees it on /readyz and in the
		// metrics too, for as long as this process runs.
		p.warn(rec.String())
		sm.report(rec)
	}
	spans, err := p.index.Restore(st)
	if err != nil {
		return err
	}
	pending, err := p.feedback.Restore(st)
	if err != nil {
		return err
	}
	maxBytes := p.cfg.QueueMaxBytes
	p.queued.OnCorrupt = p.warn
	q, err := queue.Open(queue.Config{Dir: filepath.Join(p.cfg.DataDir, QueueDir), MaxBytes: maxBytes,
		Sync: p.cfg.DataSync, Logger: p.log.With("component", "queue"), OnCorrupt: p.queued.Corrupted})
	if err != nil {
		return err
	}
	p.queue = q
	p.queued.Attach(q, maxBytes)
	p.queued.Start()
	p.log.Info("data directory opened", "file", st.Path(), "sync", p.cfg.DataSync,
		"index_entries", spans, "feedback_pending", pending, "queued_exports", q.Len(), "queue_max_bytes", maxBytes)
	return nil
}

// serve serves srv on ln, over TLS when tls is not nil.
func (p *Proxy) serve(name string, srv *http.Server, ln net.Listener, tls *tlsconfig.Server) {
	p.wg.Go(func() {
		if err := tlsconfig.ServeHTTP(srv, ln, tls); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("server stopped", "server", name, "err", err)
		}
	})
}

// Shutdown stops taking spans and feedback, lets the exports and the
// annotation attempts in flight finish, then stops the feedback service,
// closes the data directory (the feedback still pending stays there for
// the next start) and the admin listener. It waits until ctx ends at most.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.ready.Store(false)
	err := p.receiver.Shutdown(ctx)
	if p.queued != nil {
		// An export being delivered now is cut off and sent again at the
		// next start: the queue is at-least-once.
		p.queued.Stop()
	}
	if p.queue != nil {
		err = errors.Join(err, p.queue.Close())
		p.queue = nil
	}
	if p.feedbackSrv != nil {
		err = errors.Join(err, p.feedbackSrv.Shutdown(ctx))
	} else if p.feedbackLn != nil {
		err = errors.Join(err, p.feedbackLn.Close())
	}
	err = errors.Join(err, p.stopSeeker())
	err = errors.Join(err, p.feedback.Shutdown(ctx))
	// After the feedback service: its last writes take the shared
	// index's vote locks.
	err = errors.Join(err, p.closeShared(ctx))
	if p.store != nil {
		// The feedback service has stopped writing; the receiver has
		// stopped adding to the index: what the index holds back for
		// StoreDelay is written now.
		p.index.CloseStore()
		err = errors.Join(err, p.store.Close())
		p.store = nil
	}
	if p.adminSrv != nil {
		err = errors.Join(err, p.adminSrv.Shutdown(ctx))
	} else if p.adminLn != nil {
		err = errors.Join(err, p.adminLn.Close())
	}
	p.wg.Wait()
	for _, c := range p.clients {
		c.CloseIdleConnections()
	}
	return err
}

// Addrs are the bound addresses (useful with port 0 in tests).
type Addrs struct {
	OTLPGRPC, OTLPHTTP, Feedback, Admin string
}

// Addrs returns the addresses the proxy listens on, once started.
func (p *Proxy) Addrs() Addrs {
	return Addrs{
		OTLPGRPC: addrString(p.receiver.GRPCAddr()),
		OTLPHTTP: addrString(p.receiver.HTTPAddr()),
		Feedback: addrString(addrOf(p.feedbackLn)),
		Admin:    addrString(addrOf(p.adminLn)),
	}
}

func addrOf(ln net.Listener) net.Addr {
	if ln == nil {
		return nil
	}
	return ln.Addr()
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// maxWarnings bounds what /readyz lists; the log has every one.
const maxWarnings = 20

// warn adds a warning /readyz reports from now on.
func (p *Proxy) warn(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch n := len(p.warnings); {
	case n < maxWarnings:
		p.warnings = append(p.warnings, msg)
	case n == maxWarnings:
		p.warnings = append(p.warnings, "more problems were found: see the log")
	}
}

// Warnings returns what /readyz reports besides being ready: damage found
// in the data directory at start, and what it cost.
func (p *Proxy) Warnings() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.warnings)
}

func (p *Proxy) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{Registry: p.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	// Ready or not on the first line, then what an operator should know
	// though the proxy serves: one "warning: " line each.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		var b strings.Builder
		code := http.StatusOK
		if p.ready.Load() {
			b.WriteString("ready\n")
		} else {
			code = http.StatusServiceUnavailable
			b.WriteString("not ready: starting or shutting down\n")
		}
		for _, msg := range p.Warnings() {
			b.WriteString("warning: " + msg + "\n")
		}
		if p.shared != nil {
			if msg := p.shared.Degraded(); msg != "" {
				b.WriteString("warning: " + msg + "\n")
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, b.String())
	})
	return mux
}

// openTokenKeys loads the key file of per-response tokens, logging which
// keys sign and verify (their ids, never the keys) and every reload.
func openTokenKeys(path string, log *slog.Logger) (*token.KeysFile, error) {
	kf, err := token.OpenKeysFile(path, token.DefaultRecheck)
	if err != nil {
		return nil, fmt.Errorf("token keys: %w", err)
	}
	kf.OnReload = func(k *token.Keys) {
		log.Info("token keys reloaded", "file", path, "key_ids", k.KeyIDs())
	}
	kf.OnError = func(err error) {
		log.Error("token keys not reloaded; the keys loaded before stay in use", "file", path, "err", err)
	}
	log.Info("per-response tokens on", "file", path, "key_ids", kf.Keys().KeyIDs())
	return kf, nil
}
