// Package otlp receives OTLP trace exports over gRPC and HTTP, and sends them
// on over OTLP/HTTP protobuf. With WithLogs it takes OTLP logs exports too,
// within the same limits, for a LogsConsumer (logs.go).
//
// Both sides answer as the OTLP specification asks, so an app's exporter can
// treat the proxy as it would treat a collector: one mapping between gRPC
// codes and HTTP statuses ([HTTPStatus]), error bodies as google.rpc.Status
// in the caller's encoding, and a retry delay on every retryable answer.
// See https://opentelemetry.io/docs/specs/otlp/#failures.
package otlp
