//go:build e2e

package faults

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Damaged files: the proxy queued exports while Phoenix was down and held
// the feedback for them, then stopped (SIGTERM) or died (SIGKILL); its
// state.db was damaged (bytes flipped in one feedback's record, or the file
// truncated to nothing) and a byte flipped in one queued export. On restart
// it starts (no crash loop), /readyz says in warning lines what was lost,
// and every intact export and feedback is delivered.

func TestAttackCorruptFlip(t *testing.T) {
	t.Parallel()
	corruptCase(t, "corrupt-flip", false)
}

func TestAttackCorruptTruncate(t *testing.T) {
	t.Parallel()
	corruptCase(t, "corrupt-truncate", true)
}

func corruptCase(t *testing.T, name string, truncate bool) {
	gate := newPhoenixGate(t)
	gate.down.Store(true)
	p := newProxyAt(t, gate.URL+"/v1/traces", gate.URL)
	g := newGoodClient(t, p, name, false)

	// While Phoenix is down: exports are queued on disk, and the feedback
	// for them waits for their spans.
	const n = 12
	const damagedExport, damagedFeedback = 3, 7
	ops := make([]*goodOp, n)
	for i := range ops {
		op, td := g.newOp("http", false)
		if !g.export(op, td) {
			t.Fatalf("export %d while Phoenix is down: %s after %d tries", i, op.last, op.tries)
		}
		ops[i] = op
	}
	for i, op := range ops {
		if !g.feedback(op) || op.fbState != "pending" {
			t.Fatalf("feedback %d while Phoenix is down: %s, state %q", i, op.fbLast, op.fbState)
		}
	}
	if q := p.metric("feedbackproxy_queue_exports", ""); q != n {
		t.Fatalf("%v exports queued, want %d", q, n)
	}
	if f := p.metric("feedbackproxy_feedback_pending", ""); f != n {
		t.Fatalf("%v feedbacks pending, want %d", f, n)
	}
	how := "stopped"
	if truncate {
		p.kill()
		how = "killed"
	} else {
		p.stop()
	}

	// The damage.
	flipped := flipQueued(t, filepath.Join(p.dataDir, "queue"), ops[damagedExport].traceID[:])
	statePath := filepath.Join(p.dataDir, "state.db")
	var stateDamage string
	if truncate {
		if err := os.Truncate(statePath, 0); err != nil {
			t.Fatal(err)
		}
		stateDamage = "state.db truncated to 0"
	} else {
		k := flipAll(t, statePath, []byte(`"response_id":"`+ops[damagedFeedback].responseID+`"`))
		stateDamage = fmt.Sprintf("state.db: %d bytes flipped in feedback %d's record", k, damagedFeedback)
	}

	// Phoenix is back; the proxy restarts on the damaged directory.
	gate.down.Store(false)
	rss := monitorRSS(p)
	if err := p.startErr(); err != nil {
		rss.stop()
		t.Fatalf("after %s and a byte flipped in %s the proxy does not start: %v", stateDamage, flipped, err)
	}
	time.Sleep(2 * time.Second)
	if processExited(p.pid()) {
		rss.stop()
		t.Fatalf("the proxy exited after it started on the damaged data directory")
	}
	code, body := p.readyz()
	var warnings []string
	for _, line := range strings.Split(body, "\n") {
		if w, ok := strings.CutPrefix(line, "warning: "); ok {
			warnings = append(warnings, w)
		}
	}
	if code != 200 || !strings.HasPrefix(body, "ready\n") {
		t.Errorf("/readyz after the restart: %d %q", code, body)
	}
	if !matchAny(warnings, `(?i)state\.db|data file`) {
		t.Errorf("/readyz has no warning about the damaged state.db (%s): %q", stateDamage, body)
	}
	if !matchAny(warnings, `(?i)queue`) {
		t.Errorf("/readyz has no warning about the damaged queued export: %q", body)
	}

	// A well-behaved client works on the restarted proxy.
	g.do("http", true)

	// Every intact export reaches Phoenix, and every intact feedback for
	// an export that did is annotated.
	wantSpans := map[string]bool{}
	for i, op := range ops {
		if i != damagedExport {
			for _, id := range op.spanIDs {
				wantSpans[id] = true
			}
		}
	}
	// Truncated, state.db kept no feedback; flipped, it lost one record.
	// The feedback for the damaged export waits for a span that is gone.
	var wantFeedback []int
	for i := range ops {
		if !truncate && i != damagedExport && i != damagedFeedback {
			wantFeedback = append(wantFeedback, i)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	spansIn := 0
	for {
		got := phoenixSpanIDs(t, g.project)
		spansIn = 0
		for id := range wantSpans {
			if got[id] {
				spansIn++
			}
		}
		if spansIn == len(wantSpans) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	exportsIn := spansIn / 3
	annotated := 0
	for _, i := range wantFeedback {
		for {
			if hasAnnotation(t, g.project, ops[i].llmSpanID, ops[i].identifier) {
				annotated++
				break
			}
			if time.Now().After(deadline) {
				st := lookup(t, p, ops[i].responseID)
				t.Errorf("feedback %d (intact) is not annotated in Phoenix; the proxy says %+v", i, st)
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	goodSummary := g.verify(30 * time.Second)
	peak := rss.stop()
	t.Logf("ATTACK %s: %s with %d exports queued and %d feedbacks pending, %s, a byte flipped in queued export %d (%s); restarted ready, warnings %q; "+
		"intact exports delivered %d/%d, intact feedback annotated %d/%d; %s peak_rss_mib=%d",
		name, how, n, n, stateDamage, damagedExport, flipped, warnings,
		exportsIn, n-1, annotated, len(wantFeedback), goodSummary, peak)
	if spansIn < len(wantSpans) {
		t.Errorf("%d of %d spans of intact queued exports are not in Phoenix", len(wantSpans)-spansIn, len(wantSpans))
	}
	if peak > attackRSSLimitMiB {
		t.Errorf("peak RSS %d MiB, over the bound of %d MiB", peak, attackRSSLimitMiB)
	}
}

func matchAny(lines []string, pattern string) bool {
	re := regexp.MustCompile(pattern)
	for _, l := range lines {
		if re.MatchString(l) {
			return true
		}
	}
	return false
}

// flipQueued flips one byte of marker (an export's trace id) in the queue
// file that holds it: the record around it no longer matches its
// checksum, whatever the framing. It returns the file and offset.
func flipQueued(t *testing.T, dir string, marker []byte) string {
	t.Helper()
	var where string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || where != "" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		i := bytes.Index(b, marker)
		if i < 0 {
			return nil
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		pos := int64(i + len(marker)/2)
		if _, err := f.WriteAt([]byte{b[pos] ^ 0xff}, pos); err != nil {
			return err
		}
		where = fmt.Sprintf("%s at %d", filepath.Base(path), pos)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if where == "" {
		t.Fatalf("no file under %s holds the queued export", dir)
	}
	return where
}

// flipAll flips the first byte of every occurrence of pattern in the file
// (bbolt may keep old copies of a record in free pages: the live one is
// among them). It returns how many it flipped.
func flipAll(t *testing.T, path string, pattern []byte) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for off := 0; ; {
		i := bytes.Index(b[off:], pattern)
		if i < 0 {
			break
		}
		b[off+i] ^= 0xff
		n++
		off += i + len(pattern)
	}
	if n == 0 {
		t.Fatalf("%s holds no %q", path, pattern)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return n
}
