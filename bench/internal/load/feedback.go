package load

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// feedbacker sends feedback at a rate, each for a response just exported,
// and measures from each POST /feedback to its annotation in Phoenix (as
// the sink standing in for it tells).
type feedbacker struct {
	cfg    FeedbackConfig
	client *http.Client
	tokens chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	sentAt  map[string]time.Time // response id -> when its feedback was posted
	refused int
	errors  []string
}

func newFeedbacker(cfg FeedbackConfig) *feedbacker {
	if cfg.Wait <= 0 {
		cfg.Wait = 30 * time.Second
	}
	return &feedbacker{cfg: cfg, client: &http.Client{Timeout: 30 * time.Second},
		tokens: make(chan struct{}, 1), sentAt: map[string]time.Time{}}
}

// pace makes a feedback due at the configured rate; one not taken is lost
// (no burst after a pause).
func (f *feedbacker) pace(ctx context.Context) {
	t := time.NewTicker(time.Duration(float64(time.Second) / f.cfg.Rate))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			select {
			case f.tokens <- struct{}{}:
			default:
			}
		}
	}
}

// due reports whether a feedback is due now, and takes it.
func (f *feedbacker) due() bool {
	select {
	case <-f.tokens:
		return true
	default:
		return false
	}
}

// send posts a thumbs-up for responseID, Delay from now, in the
// background.
func (f *feedbacker) send(responseID string) {
	f.wg.Go(func() {
		time.Sleep(f.cfg.Delay)
		body, _ := json.Marshal(map[string]string{"response_id": responseID, "thumbs": "up"})
		req, err := http.NewRequest(http.MethodPost, f.cfg.URL, bytes.NewReader(body))
		if err != nil {
			f.fail(err.Error())
			return
		}
		req.Header.Set("Content-Type", "application/json")
		if f.cfg.Token != "" {
			req.Header.Set("Authorization", "Bearer "+f.cfg.Token)
		}
		start := time.Now()
		f.mu.Lock()
		f.sentAt[responseID] = start
		f.mu.Unlock()
		resp, err := f.client.Do(req)
		if err != nil {
			f.fail(err.Error())
			return
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			f.fail(fmt.Sprintf("POST /feedback: %d %s", resp.StatusCode, strings.TrimSpace(string(msg))))
		}
	})
}

func (f *feedbacker) fail(msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refused++
	if len(f.errors) < 5 && !slices.Contains(f.errors, msg) {
		f.errors = append(f.errors, msg)
	}
}

// finish waits for the feedback posts, then for their annotations (up to
// Wait), and reports.
func (f *feedbacker) finish(ctx context.Context) *FeedbackReport {
	f.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	rep := &FeedbackReport{Sent: len(f.sentAt), Refused: f.refused, Errors: f.errors}
	var at map[string]int64
	deadline := time.Now().Add(f.cfg.Wait)
	for {
		var err error
		at, err = f.annotations(ctx)
		if err != nil {
			rep.Errors = append(rep.Errors, err.Error())
			break
		}
		missing := 0
		for id := range f.sentAt {
			if _, ok := at[id]; !ok {
				missing++
			}
		}
		if missing <= f.refused || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var lat []time.Duration
	for id, t0 := range f.sentAt {
		if t1, ok := at[id]; ok {
			lat = append(lat, max(0, time.Unix(0, t1).Sub(t0)))
		}
	}
	slices.Sort(lat)
	rep.Annotated = len(lat)
	rep.P50ms, rep.P99ms = ms(quantile(lat, 0.50)), ms(quantile(lat, 0.99))
	if len(lat) > 0 {
		rep.Maxms = ms(lat[len(lat)-1])
	}
	return rep
}

func (f *feedbacker) annotations(ctx context.Context) (map[string]int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.cfg.AnnotationsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var at map[string]int64
	if err := json.NewDecoder(resp.Body).Decode(&at); err != nil {
		return nil, fmt.Errorf("%s: %w", f.cfg.AnnotationsURL, err)
	}
	return at, nil
}
