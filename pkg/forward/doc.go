// Package forward sends the exports the proxy received on to Phoenix:
// straight while Phoenix takes them, and through a durable disk queue
// (pkg/queue) while it is down or refusing.
//
// In the path of one span it is the step between the receiver and the
// index: receive and check (pkg/otlp, pkg/otlp/wire) -> forward (this
// package: straight, or through pkg/queue while Phoenix is down) -> find
// the response ids and index them (pkg/extract, pkg/index), for the exports
// Phoenix accepted only, through the delivered function [NewQueued] is
// given. Without a data directory the proxy forwards straight and answers
// the app with Phoenix's answer; [Queued] is the forwarder it uses with one.
//
// # Delivery
//
// While Phoenix takes exports, [Queued.Export] sends each straight and
// passes on its answer. A refusal the client may retry (503, 429, a network
// error) sends the export, and every later one, to the queue: the app is
// answered once it is on disk, and its spans are indexed once Phoenix takes
// them. The backlog goes up in order, in batches of one project (at most
// 1024 exports, 8192 spans and [BatchBytes]); a batch Phoenix refuses for
// good is sent again in halves, so only the exports it refuses are dropped,
// and counted.
// Once the queue is drained, exports go straight again. Delivery is
// at-least-once: an export cut off by Stop or a crash is sent again at the
// next start. A full queue answers ResourceExhausted with a Retry-After, so
// the app backs off rather than lose spans.
//
// # On disk
//
// Each queue record is one export:
//
//	version  1 byte, 1
//	length   uint16, little endian: bytes of the project name
//	project  the Phoenix project the export goes to ("" when the app named none)
//	body     the ExportTraceServiceRequest, OTLP protobuf, as received
//
// The queue itself (segments, checksums, the acknowledged position) is
// described in pkg/queue. Damage it finds is counted here and told to
// [Queued.OnCorrupt].
//
// # Metrics
//
// feedbackproxy_queue_bytes, _exports and _capacity_bytes (size and
// capacity), _enqueued_spans_total, _refused_exports_total, _dropped_total
// (by reason), _corruptions_total (by kind) and _corrupt_bytes_total.
package forward
