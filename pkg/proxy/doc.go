// Package proxy assembles the sidecar: OTLP in, Phoenix out, the
// response-id index in between, and the feedback API beside it.
//
// The path of one span: otlp.Receiver -> direct or forward.Queued
// (otlp.Exporter, to Phoenix) -> indexer.delivered -> index.Index.Add ->
// feedback.Service.Indexed. The path of one feedback: feedback API ->
// feedback.Service (index lookup) -> phoenix.Client.AnnotateSpans.
package proxy
