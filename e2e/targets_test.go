//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/feedback"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/phoenix"
	"github.com/feedbackproxy/phoenix-feedback-proxy/pkg/proxy"
)

// conversation is what e2e/apps/conversation.py prints: two turns of one
// session, the second built from two LLM calls.
type conversation struct {
	SessionID string `json:"session_id"`
	Turns     []struct {
		TraceID     string   `json:"trace_id"`
		ResponseIDs []string `json:"response_ids"`
	} `json:"turns"`
}

func runConversation(t *testing.T, p *proxy.Proxy, llmURL, project, session string) conversation {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("apps", "conversation.py"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python(t), script, "--base-url", llmURL, "--endpoint", "http://"+p.Addrs().OTLPHTTP,
		"--session-id", session, "--project", project)
	cmd.Env = appEnv()
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("conversation.py: %v\n%s", err, stderr)
	}
	var c conversation
	if err := json.Unmarshal(out, &c); err != nil || len(c.Turns) != 2 || len(c.Turns[1].ResponseIDs) != 2 {
		t.Fatalf("conversation.py printed %q (%v)", out, err)
	}
	return c
}

// storedAnnotation is a trace or session annotation as Phoenix lists it.
type storedAnnotation struct {
	TraceID    string         `json:"trace_id"`
	SessionID  string         `json:"session_id"`
	Name       string         `json:"name"`
	Identifier string         `json:"identifier"`
	Result     phoenix.Result `json:"result"`
}

// listAnnotations GETs /v1/projects/{project}/{kind}_annotations?{kind}_ids=id;
// Phoenix's 404 (nothing of it yet) is an empty list.
func listAnnotations(t *testing.T, project, kind, id string) []storedAnnotation {
	t.Helper()
	u := fmt.Sprintf("%s/v1/projects/%s/%s_annotations?%s_ids=%s", phoenixURL, url.PathEscape(project), kind, kind, url.QueryEscape(id))
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	var page struct {
		Data []storedAnnotation `json:"data"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&page) != nil {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	return page.Data
}

func byName(anns []storedAnnotation, name, identifier string) []storedAnnotation {
	var out []storedAnnotation
	for _, a := range anns {
		if a.Name == name && a.Identifier == identifier {
			out = append(out, a)
		}
	}
	return out
}

func describeAnns(anns []storedAnnotation) string {
	var parts []string
	for _, a := range anns {
		parts = append(parts, fmt.Sprintf("%s/%s: %s", a.Name, a.Identifier, describe(a.Result.Label, a.Result.Score)))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// TestFeedbackTargets: a real chat app with sessions (OpenInference's
// using_session) talks through the proxy; votes on a whole answer (target
// trace, by either of its two response ids), on the conversation (target
// session) and comments (notes) land in the real Phoenix where the user
// meant them.
func TestFeedbackTargets(t *testing.T) {
	_, llmURL := startLLM(t)
	p := startProxy(t, nil)
	project := "e2e-targets-" + randomSuffix()
	conv := runConversation(t, p, llmURL, project, "conv-"+randomSuffix())
	c := phoenixClient(t)
	user := "user-" + randomSuffix()

	// The answer of turn 2, voted on by its draft's response id: the trace.
	trace2 := conv.Turns[1].TraceID
	code, st := postFeedback(t, p, map[string]any{
		"response_id": conv.Turns[1].ResponseIDs[0], "thumbs": "down", "identifier": user,
		"target": "trace", "comment": "The second answer contradicts the first.",
	})
	if code != http.StatusAccepted || st.Target != feedback.TargetTrace {
		t.Fatalf("trace vote: %d %+v", code, st)
	}
	// The same user changes the vote through the answer's other response id:
	// Phoenix keeps one trace annotation per name and identifier.
	postFeedback(t, p, map[string]any{"response_id": conv.Turns[1].ResponseIDs[1], "thumbs": "up", "identifier": user, "target": "trace"})

	// The conversation, by turn 1's response id.
	code, st = postFeedback(t, p, map[string]any{
		"response_id": conv.Turns[0].ResponseIDs[0], "score": 0.8, "label": "helpful", "identifier": user,
		"target": "session", "comment": "Helpful overall.",
	})
	if code != http.StatusAccepted || st.Target != feedback.TargetSession {
		t.Fatalf("session vote: %d %+v", code, st)
	}
	// A comment alone on turn 1's LLM span: a span note.
	postFeedback(t, p, map[string]any{"response_id": conv.Turns[0].ResponseIDs[0], "identifier": user, "comment": "Too long."})

	eventually(t, 60*time.Second, "trace annotation and note", func() (bool, string) {
		anns := listAnnotations(t, project, "trace", trace2)
		vote, note := byName(anns, "user feedback", user), byName(anns, "note", "feedback/user feedback/"+user)
		ok := len(vote) == 1 && vote[0].Result.Label != nil && *vote[0].Result.Label == "thumbs-up" &&
			len(note) == 1 && note[0].Result.Explanation != nil && *note[0].Result.Explanation == "The second answer contradicts the first."
		return ok, describeAnns(anns)
	})
	eventually(t, 60*time.Second, "session annotation and note", func() (bool, string) {
		anns := listAnnotations(t, project, "session", conv.SessionID)
		vote, note := byName(anns, "user feedback", user), byName(anns, "note", "feedback/user feedback/"+user)
		ok := len(vote) == 1 && vote[0].Result.Label != nil && *vote[0].Result.Label == "helpful" &&
			vote[0].Result.Score != nil && *vote[0].Result.Score == 0.8 && len(note) == 1
		return ok, describeAnns(anns)
	})
	var spanID string
	eventually(t, 30*time.Second, "span note", func() (bool, string) {
		state := getFeedback(t, p, conv.Turns[0].ResponseIDs[0])
		if state.Span == nil {
			return false, "not indexed"
		}
		spanID = state.Span.SpanID
		anns := annotationsOn(t, c, project, spanID)
		for _, a := range anns {
			if a.Name == "note" && a.Identifier == "feedback/user feedback/"+user && a.Result.Explanation != nil && *a.Result.Explanation == "Too long." {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", anns)
	})
	// The votes on the trace and the session left the spans alone: only the note is on it.
	if anns := annotationsOn(t, c, project, spanID); len(anns) != 1 {
		t.Errorf("span %s holds %d annotations, want the note only: %+v", spanID, len(anns), anns)
	}
	// What the proxy says: the session vote names the session it found.
	for _, s := range getFeedback(t, p, conv.Turns[0].ResponseIDs[0]).Feedback {
		if s.Target == feedback.TargetSession && (s.SessionID != conv.SessionID || s.State != feedback.Annotated) {
			t.Errorf("session vote status %+v, want annotated on session %s", s, conv.SessionID)
		}
	}
}
