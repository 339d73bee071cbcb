package proxy

import (
	"context"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/otlp"
)

// Forwarder sends an export upstream and says, with an *otlp.Error, whether
// the client may retry it. *otlp.Exporter is one; a durable queue can be
// another.
type Forwarder interface {
	Export(ctx context.Context, e *otlp.Export) error
}

// spanPath is what the receiver hands exports to: it forwards them and, once
// the upstream took them, indexes their LLM spans.
type spanPath struct {
	extractor index.Extractor
	forwarder Forwarder
	index     *index.Index
	// indexed is told of every response id that now resolves to a span.
	indexed func([]index.Entry)
}

func (p *spanPath) ConsumeTraces(ctx context.Context, e *otlp.Export) error {
	entries := p.extractor.Extract(e.Request.Traces(), e.Project)
	if err := p.forwarder.Export(ctx, e); err != nil {
		return err
	}
	// Index only what Phoenix accepted: feedback for a span it refused
	// could never be written.
	if added := p.index.Add(entries); len(added) > 0 && p.indexed != nil {
		p.indexed(added)
	}
	return nil
}
