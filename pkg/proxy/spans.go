package proxy

import (
	"context"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/extract"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/forward"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp"
)

// The path of a span: the receiver hands each export to a consumer chosen
// when the proxy is built, direct (memory only: the app is answered once
// Phoenix answered) or forward.Queued (with a data directory: through a
// disk queue while Phoenix is unavailable). Either hands every export
// Phoenix accepted to the indexer.

// indexer indexes the LLM spans of the exports Phoenix accepted. Only
// those: feedback for a span it refused could never be written.
type indexer struct {
	extractor extract.Extractor
	index     *index.Index
	// indexed is told of every response id that now resolves to a span.
	indexed func([]index.Entry)
}

func (x *indexer) delivered(e *otlp.Export) {
	// The receiver (or the queue, reading it back) checked the body.
	entries := x.extractor.ExtractProto(e.Body, e.Project)
	if added := x.index.Add(entries); len(added) > 0 && x.indexed != nil {
		x.indexed(added)
	}
}

// direct forwards each export and answers the app with Phoenix's answer.
type direct struct {
	upstream  forward.Exporter
	delivered func(*otlp.Export)
}

func (d direct) ConsumeTraces(ctx context.Context, e *otlp.Export) error {
	if err := d.upstream.Export(ctx, e); err != nil {
		return err
	}
	d.delivered(e)
	return nil
}
