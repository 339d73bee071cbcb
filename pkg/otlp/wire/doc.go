// Package wire reads OTLP trace exports in the protobuf wire format without
// decoding them into objects.
//
// A pass-through proxy forwards the bytes it received; it only needs to know
// that they are a well-formed ExportTraceServiceRequest, how many spans they
// hold, and, for the few spans of LLM calls, their ids and some attributes.
// Decoding the whole request into pdata for that costs more than everything
// else the proxy does to an export, most of it in allocations the garbage
// collector then has to find (docs/benchmarks.md). [Scan] checks the whole
// message tree in one pass, as strictly as pdata's decoder, and hands out
// each span as slices of the body.
//
// The schema is opentelemetry-proto's trace v1
// (https://github.com/open-telemetry/opentelemetry-proto/blob/main/opentelemetry/proto/trace/v1/trace.proto).
package wire
