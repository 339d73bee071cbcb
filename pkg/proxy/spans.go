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
	// queued, when set, takes the exports instead of forwarder: it sends
	// them on itself, through a disk queue while Phoenix is unavailable,
	// and calls delivered for each one Phoenix accepted.
	queued *queuedForwarder
}

func (p *spanPath) ConsumeTraces(ctx context.Context, e *otlp.Export) error {
	if p.queued != nil {
		return p.queued.Export(ctx, e)
	}
	if err := p.forwarder.Export(ctx, e); err != nil {
		return err
	}
	p.delivered(e)
	return nil
}

// delivered indexes the LLM spans of an export Phoenix accepted. Only then:
// feedback for a span it refused could never be written.
func (p *spanPath) delivered(e *otlp.Export) {
	// The receiver (or the queue, reading it back) checked the body.
	entries := p.extractor.ExtractProto(e.Body, e.Project)
	if added := p.index.Add(entries); len(added) > 0 && p.indexed != nil {
		p.indexed(added)
	}
}
