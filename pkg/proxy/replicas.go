package proxy

import (
	"context"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/seek"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/sharedindex"
)

// Several replicas: the span of a response goes through one replica's
// sidecar, the feedback on it through any. Each replica writes what it
// indexes to the shared index (when there is one), and looks up there,
// then in Phoenix, the spans its own feedback waits for and its index
// misses.

// newSeeker builds the shared index and the Seeker that Config asks for.
func (p *Proxy) newSeeker(client *phoenix.Client) error {
	var shared, fallback seek.Source
	if p.cfg.Shared.URL != "" {
		s, err := sharedindex.New(p.cfg.Shared, sharedindex.NewMetrics(p.reg), p.log.With("component", "shared-index"))
		if err != nil {
			return err
		}
		p.shared, shared = s, s
	}
	if !p.cfg.NoPhoenixLookup {
		p.lookup = seek.NewPhoenixSource(client, p.cfg.PhoenixLookup)
		fallback = p.lookup
	}
	if shared == nil && fallback == nil {
		return nil
	}
	p.seeker = seek.New(p.feedback, p.learn, shared, fallback, seek.NewMetrics(p.reg), p.log.With("component", "seek"))
	if p.shared != nil {
		p.feedback.UseFinder(p.seeker)
		p.feedback.UseOrdering(p.shared.Votes())
	}
	return nil
}

// indexed is told of the entries this replica indexed from its own spans.
func (p *Proxy) indexed(added []index.Entry) {
	p.feedback.Indexed(added)
	if p.lookup != nil {
		for _, e := range added {
			p.lookup.Saw(e.Span.Project)
		}
	}
	if p.shared != nil {
		p.shared.Put(added)
	}
}

// learn takes entries found beyond this replica's index as if its own
// spans had carried them; they are not written back to the shared index.
func (p *Proxy) learn(found []index.Entry) {
	if added := p.index.Add(found); len(added) > 0 {
		p.feedback.Indexed(added)
	}
}

// startSeeker starts the shared index and the lookups, once the feedback
// kept in the data directory is back (it may wait for spans too).
func (p *Proxy) startSeeker() {
	if p.shared != nil {
		p.shared.Want(p.feedback.IsWaiting)
		p.shared.Start(p.seeker.Notified, p.seeker.Resync)
		p.log.Info("shared index", "url", sharedindex.Redacted(p.cfg.Shared.URL))
	}
	if p.seeker != nil {
		p.seeker.Start()
	}
}

// stopSeeker stops the lookups; it runs once the receiver stopped adding.
func (p *Proxy) stopSeeker() error {
	if p.seeker != nil {
		p.seeker.Stop()
	}
	return nil
}

// closeShared gives the shared index until ctx ends to write what it
// holds (one attempt, with Redis down), then closes it.
func (p *Proxy) closeShared(ctx context.Context) error {
	if p.shared != nil {
		return p.shared.Close(ctx)
	}
	return nil
}
