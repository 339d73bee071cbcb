package seek

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"golang.org/x/time/rate"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/index"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
)

// PhoenixAPI is what the fallback asks Phoenix; *phoenix.Client is one.
type PhoenixAPI interface {
	Projects(ctx context.Context) ([]string, error)
	SpansByResponseID(ctx context.Context, project, responseID string) ([]phoenix.Span, error)
}

// Defaults for PhoenixConfig.
const (
	// A lookup costs Phoenix 80 ms of CPU (an id in gen_ai.response.id)
	// to 240 ms (one inside output.value, or none) on a project of 20,000
	// spans, and grows with the project: docs/phoenix-lookup.md.
	DefaultPhoenixRate        = 1
	DefaultPhoenixBurst       = 3
	DefaultPhoenixMaxProjects = 20
	// projectsTTL is how long the list of Phoenix's projects is reused.
	projectsTTL = time.Minute
)

// PhoenixConfig bounds the Phoenix fallback.
type PhoenixConfig struct {
	// Rate is the most lookups a second this replica makes in Phoenix
	// (one response id in one project: two HTTP requests when the id is
	// not in gen_ai.response.id, more when the GraphQL search pages; or
	// one list of the projects), whatever the number of waiting
	// feedbacks; Burst how many may go at once after a quiet time. Zero
	// means DefaultPhoenixRate and DefaultPhoenixBurst.
	Rate  float64
	Burst int
	// Projects are the projects to look in. Empty means those this
	// replica's own spans went to (see Saw), then those Phoenix lists,
	// newest first, up to MaxProjects in all (zero:
	// DefaultPhoenixMaxProjects).
	Projects    []string
	MaxProjects int
}

// PhoenixSource looks response ids up in Phoenix's stored spans: the
// fallback for a replica that never saw the span and has no shared index,
// or whose index was lost.
type PhoenixSource struct {
	api     PhoenixAPI
	cfg     PhoenixConfig
	limiter *rate.Limiter

	// listMu guards the list of Phoenix's projects; only the Seeker's
	// Phoenix loop takes it, and holds it while it asks Phoenix.
	listMu   sync.Mutex
	projects []string
	listed   time.Time
	// seenMu guards seen: the projects of this replica's own spans, most
	// recent last, asked first. Saw takes it on the export path, so
	// nothing slow ever holds it.
	seenMu sync.Mutex
	seen   []string
}

// Saw notes the project of a span this replica indexed: the replicas of
// an app export to the same projects, so the span another replica saw is
// most likely in one of them.
func (p *PhoenixSource) Saw(project string) {
	p.seenMu.Lock()
	defer p.seenMu.Unlock()
	if n := len(p.seen); n > 0 && p.seen[n-1] == project {
		return
	}
	if i := slices.Index(p.seen, project); i >= 0 {
		p.seen = slices.Delete(p.seen, i, i+1)
	}
	p.seen = append(p.seen, project)
	if len(p.seen) > p.cfg.MaxProjects {
		p.seen = slices.Delete(p.seen, 0, 1)
	}
}

// withDefaults returns c with its zero fields set to their defaults.
func (c PhoenixConfig) withDefaults() PhoenixConfig {
	if c.Rate == 0 {
		c.Rate = DefaultPhoenixRate
	}
	if c.Burst == 0 {
		c.Burst = DefaultPhoenixBurst
	}
	if c.MaxProjects == 0 {
		c.MaxProjects = DefaultPhoenixMaxProjects
	}
	return c
}

// NewPhoenixSource returns the fallback that asks api.
func NewPhoenixSource(api PhoenixAPI, cfg PhoenixConfig) *PhoenixSource {
	cfg = cfg.withDefaults()
	return &PhoenixSource{api: api, cfg: cfg, limiter: rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst)}
}

// Find asks every project for each id, one request each, each waiting for
// its token; the first project holding spans of an id answers for it.
func (p *PhoenixSource) Find(ctx context.Context, responseIDs []string) ([]index.Entry, error) {
	projects, err := p.projectList(ctx)
	if err != nil {
		return nil, err
	}
	var out []index.Entry
	var errs []error
	for _, id := range responseIDs {
		if phoenix.CheckResponseID(id) != nil {
			// Phoenix could not be asked for it (see CheckResponseID): no
			// token spent, and never found.
			continue
		}
		for _, project := range projects {
			if err := p.limiter.Wait(ctx); err != nil {
				return out, err
			}
			spans, err := p.api.SpansByResponseID(ctx, project, id)
			if err != nil {
				if ae := (*phoenix.APIError)(nil); errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound {
					continue // the project went away since it was listed
				}
				errs = append(errs, err)
				continue
			}
			if e, ok := entryOf(id, project, spans); ok {
				out = append(out, e)
				break
			}
		}
	}
	return out, errors.Join(errs...)
}

func (p *PhoenixSource) projectList(ctx context.Context) ([]string, error) {
	if len(p.cfg.Projects) > 0 {
		return p.cfg.Projects, nil
	}
	p.seenMu.Lock()
	seen := slices.Clone(p.seen)
	p.seenMu.Unlock()
	p.listMu.Lock()
	defer p.listMu.Unlock()
	if p.projects == nil || time.Since(p.listed) >= projectsTTL {
		if err := p.limiter.Wait(ctx); err != nil {
			return nil, err
		}
		list, err := p.api.Projects(ctx)
		if err != nil && len(list) == 0 {
			if len(seen) > 0 {
				slices.Reverse(seen)
				return seen, nil
			}
			return nil, fmt.Errorf("listing Phoenix's projects: %w", err)
		}
		p.projects, p.listed = list, time.Now()
	}
	// The projects this replica saw first, newest first, then those
	// Phoenix lists (newest first), up to MaxProjects.
	out := make([]string, 0, p.cfg.MaxProjects)
	for i := len(seen) - 1; i >= 0; i-- {
		out = append(out, seen[i])
	}
	for _, pr := range p.projects {
		if len(out) == p.cfg.MaxProjects {
			break
		}
		if !slices.Contains(out, pr) {
			out = append(out, pr)
		}
	}
	return out, nil
}

// entryOf turns the spans Phoenix holds for id into the entry of the one
// feedback is for (index.Innermost).
func entryOf(id, project string, spans []phoenix.Span) (index.Entry, bool) {
	var cands []index.Span
	for _, s := range spans {
		var c index.Span
		if decodeID(c.TraceID[:], s.Context.TraceID) != nil || decodeID(c.SpanID[:], s.Context.SpanID) != nil {
			continue
		}
		if s.ParentID != "" {
			_ = decodeID(c.ParentID[:], s.ParentID) // unreadable: taken as a root
		}
		c.Project, c.Name = project, s.Name
		if !s.StartTime.IsZero() {
			c.Start = pcommon.NewTimestampFromTime(s.StartTime)
		}
		cands = append(cands, c)
	}
	if len(cands) == 0 {
		return index.Entry{}, false
	}
	return index.Entry{ResponseID: id, Span: index.Innermost(cands)}, true
}

func decodeID(dst []byte, s string) error {
	if len(s) != 2*len(dst) {
		return errors.New("bad length")
	}
	_, err := hex.Decode(dst, []byte(s))
	return err
}
