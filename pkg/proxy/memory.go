package proxy

import (
	"cmp"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/listener"
	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/ratelimit"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/forward"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/sharedindex"
)

// Estimates of what the proxy holds besides its budgets.
const (
	// connectionBytes is what an open connection costs: its goroutines,
	// read and write buffers and, on gRPC, flow-control windows.
	connectionBytes = 64 << 10
	// tlsConnectionBytes is what TLS adds to a connection: its state
	// (~11 KiB measured, both ends) and a 16 KiB record buffer each way.
	tlsConnectionBytes = 44 << 10
	// indexEntryBytes is an index entry with its share of the hash table
	// (docs/benchmarks.md measures 116 bytes).
	indexEntryBytes = 140
	// runtimeBytes is the Go runtime, the code and the pools.
	runtimeBytes = 32 << 20
	// zstdBytes is the receiver's zstd decoders: four with an 8 MiB window.
	zstdBytes = 32 << 20
)

// MemoryBound returns the most memory the proxy built from cfg can be made
// to hold live, whatever its clients send: the sum of its budgets and of
// what each open connection, index entry and decoder costs. The README's
// "Limits, timeouts and memory" shows the terms for the defaults. The
// garbage collector may let the heap grow past it unless a soft memory
// limit (GOMEMLIMIT) holds it there, which cmd/proxy sets from it.
func MemoryBound(cfg Config) int64 {
	cfg = cfg.withDefaults()
	r := cfg.Receiver
	maxReq := cmp.Or(r.MaxRequestBytes, otlp.DefaultMaxRequestBytes)
	inflight := cmp.Or(r.MaxInflightBytes, otlp.DefaultMaxInflightBytes)
	limits := r.Limits
	if limits == (listener.Limits{}) {
		limits = cfg.Limits
	}
	conns := int64(limits.WithDefaults().MaxConnections)
	perConn := int64(connectionBytes)
	if cfg.TLS.CertFile != "" {
		perConn += tlsConnectionBytes
	}
	listeners := int64(1) // feedback
	if r.GRPCAddr != "-" {
		listeners++
	}
	if r.HTTPAddr != "-" {
		listeners++
	}
	var shared int64
	if cfg.Shared.URL != "" {
		shared = int64(cmp.Or(cfg.Shared.MaxBacklog, sharedindex.DefaultMaxBacklog)) * sharedindex.BacklogEntryBytes
	}
	// The rate limits' buckets: per address and per token, each bounded,
	// and per network, a quarter of that.
	maxKeys := cfg.RateLimits.MaxKeys
	buckets := int64(2*maxKeys+networkKeys(maxKeys)) * ratelimit.BucketBytes
	// The disk queue's delivery loop: the records it read back (a batch,
	// or one export of up to maxReq) and the batch it sends.
	var queued int64
	if cfg.DataDir != "" {
		queued = max(maxReq, forward.BatchBytes) + forward.BatchBytes
	}
	return inflight + shared + buckets + queued +
		2*int64(otlp.GRPCReceivers(maxReq, inflight))*maxReq +
		zstdBytes +
		cfg.FeedbackInflightBytes +
		int64(cmp.Or(cfg.Feedback.MaxBytes, feedback.DefaultMaxBytes)) +
		int64(cmp.Or(cfg.Index.MaxEntries, index.DefaultMaxEntries))*indexEntryBytes +
		listeners*conns*perConn + AdminMaxConnections*connectionBytes +
		runtimeBytes
}
