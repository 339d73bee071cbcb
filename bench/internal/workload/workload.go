// Package workload builds OTLP trace exports shaped like those of an LLM app.
//
// Each trace is what one request to an app instrumented with OpenInference
// or the OpenTelemetry GenAI conventions exports: a SERVER span for the
// request, the LLM span (with the response id, token counts and, like the
// real instrumentations, the prompt and the completion as attributes), an
// HTTP client span under it and a few ordinary app spans. The attribute
// names and nesting follow the exports captured from real apps in
// pkg/extract/testdata/capture.
//
// A [Template] is encoded once; [Template.Fill] then rewrites its trace ids,
// span ids and response ids in place, so that a load generator sends fresh
// ids in every export (the index sees a new response each time) without
// paying for an encoding per export.
package workload

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// Shape is the instrumentation whose attributes the LLM span carries.
type Shape string

// The shapes of LLM span.
const (
	// OpenInference: the response id only inside the output.value JSON.
	OpenInference Shape = "openinference"
	// GenAI: the OpenTelemetry GenAI conventions, gen_ai.response.id.
	GenAI Shape = "genai"
)

// Defaults for Config.
const (
	DefaultTracesPerExport = 20
	DefaultChildSpans      = 3
	DefaultOutputBytes     = 2048
	DefaultInputBytes      = 1024
)

// Config describes one export.
type Config struct {
	// Shape is the LLM span's convention; "" means OpenInference.
	Shape Shape
	// TracesPerExport is the number of traces in one export; zero means
	// DefaultTracesPerExport.
	TracesPerExport int
	// ChildSpans is the number of spans per trace besides the request and
	// the LLM span: the first is the LLM call's HTTP client span, the rest
	// are app spans. Zero means DefaultChildSpans; negative means none.
	ChildSpans int
	// OutputBytes is the size of the LLM span's output.value (OpenInference)
	// or gen_ai.output.messages (GenAI) JSON. Zero means DefaultOutputBytes;
	// negative means a bare answer of a few words.
	OutputBytes int
	// InputBytes is the size of the prompt recorded on the LLM span. Zero
	// means DefaultInputBytes; negative means a one-line question.
	InputBytes int
	// Project, when set, is the resource attribute
	// openinference.project.name.
	Project string
}

func (c Config) withDefaults() Config {
	if c.Shape == "" {
		c.Shape = OpenInference
	}
	def := func(v *int, d int) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			*v = 0
		}
	}
	def(&c.TracesPerExport, DefaultTracesPerExport)
	def(&c.ChildSpans, DefaultChildSpans)
	def(&c.OutputBytes, DefaultOutputBytes)
	def(&c.InputBytes, DefaultInputBytes)
	return c
}

// Validate reports a configuration that cannot be built.
func (c Config) Validate() error {
	switch c.Shape {
	case "", OpenInference, GenAI:
	default:
		return fmt.Errorf("workload: shape %q: expected %s or %s", c.Shape, OpenInference, GenAI)
	}
	if c.TracesPerExport > 100_000 {
		return fmt.Errorf("workload: %d traces per export is more than an SDK sends", c.TracesPerExport)
	}
	return nil
}

// SpansPerTrace returns the number of spans in one trace.
func (c Config) SpansPerTrace() int { return 2 + c.withDefaults().ChildSpans }

// SpansPerExport returns the number of spans in one export.
func (c Config) SpansPerExport() int {
	d := c.withDefaults()
	return d.TracesPerExport * (2 + d.ChildSpans)
}

// responseIDPrefix starts every response id, as OpenAI's chat completions do.
const responseIDPrefix = "chatcmpl-"

// seqHexLen is the width of the sequence number written into a response id.
const seqHexLen = 16

// Template is an encoded export whose ids Fill rewrites.
type Template struct {
	cfg   Config
	body  []byte
	spans int
	// Offsets into body of the bytes Fill rewrites.
	traceIDs []int // 16-byte trace ids: the first 8 bytes get the sequence number
	spanIDs  []int // 8-byte span ids (and parent ids): the first 4 bytes get it
	respIDs  []int // seqHexLen hex digits after "chatcmpl-"
}

// NewTemplate builds and encodes one export. seed makes the ids that Fill
// leaves alone differ between load generators that run at once.
func NewTemplate(cfg Config, seed uint64) (*Template, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	orig, spansPerTrace := cfg, cfg.SpansPerTrace()
	cfg = cfg.withDefaults()
	b := builder{cfg: cfg, rng: rand.New(rand.NewPCG(seed, 0x5eed))}
	td := b.build()
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		return nil, err
	}
	t := &Template{cfg: orig, body: body, spans: td.SpanCount()}
	for _, id := range b.traceIDs {
		offs := findAll(body, id[:])
		if len(offs) != spansPerTrace {
			return nil, fmt.Errorf("workload: trace id found %d times, want %d", len(offs), spansPerTrace)
		}
		t.traceIDs = append(t.traceIDs, offs...)
	}
	for _, id := range b.spanIDs {
		offs := findAll(body, id[:])
		if len(offs) == 0 {
			return nil, errors.New("workload: span id not found in the encoded export")
		}
		t.spanIDs = append(t.spanIDs, offs...)
	}
	for _, id := range b.respIDs {
		offs := findAll(body, []byte(id))
		if len(offs) == 0 {
			return nil, errors.New("workload: response id not found in the encoded export")
		}
		for _, o := range offs {
			t.respIDs = append(t.respIDs, o+len(responseIDPrefix))
		}
	}
	return t, nil
}

func findAll(b, sub []byte) []int {
	var offs []int
	for from := 0; ; {
		i := bytes.Index(b[from:], sub)
		if i < 0 {
			return offs
		}
		offs = append(offs, from+i)
		from += i + len(sub)
	}
}

// Spans returns the number of spans in an export.
func (t *Template) Spans() int { return t.spans }

// Size returns the size of an encoded export in bytes.
func (t *Template) Size() int { return len(t.body) }

// Config returns the configuration the template was built from.
func (t *Template) Config() Config { return t.cfg }

// Fill appends export number seq, in OTLP protobuf, to dst[:0] and returns
// it. Exports of different seq have different trace ids, span ids and
// response ids (span ids repeat after 2^32 exports).
func (t *Template) Fill(dst []byte, seq uint64) []byte {
	dst = append(dst[:0], t.body...)
	var seq8 [8]byte
	binary.BigEndian.PutUint64(seq8[:], seq)
	for _, o := range t.traceIDs {
		copy(dst[o:o+8], seq8[:])
	}
	for _, o := range t.spanIDs {
		copy(dst[o:o+4], seq8[4:])
	}
	var hx [seqHexLen]byte
	hex.Encode(hx[:], seq8[:])
	for _, o := range t.respIDs {
		copy(dst[o:o+seqHexLen], hx[:])
	}
	return dst
}

// Request returns export number seq decoded, for benchmarks that start from
// pdata.
func (t *Template) Request(seq uint64) (ptraceotlp.ExportRequest, error) {
	req := ptraceotlp.NewExportRequest()
	err := req.UnmarshalProto(t.Fill(nil, seq))
	return req, err
}

// ResponseIDs returns the response ids in export number seq, in order.
func (t *Template) ResponseIDs(seq uint64) []string {
	body := t.Fill(nil, seq)
	var ids []string
	seen := map[string]bool{}
	for _, o := range t.respIDs {
		start := o - len(responseIDPrefix)
		id := string(body[start : o+seqHexLen+slotHexLen])
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids
}

// slotHexLen is the width of the per-trace part of a response id.
const slotHexLen = 12

type builder struct {
	cfg      Config
	rng      *rand.Rand
	traceIDs [][16]byte
	spanIDs  [][8]byte
	respIDs  []string
	used     map[string]bool
}

// unique returns n random bytes, none zero, that were not returned before,
// so that each placeholder is found exactly where it was put.
func (b *builder) unique(n int) []byte {
	if b.used == nil {
		b.used = map[string]bool{}
	}
	for {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(1 + b.rng.IntN(255))
		}
		if !b.used[string(p)] {
			b.used[string(p)] = true
			return p
		}
	}
}

func (b *builder) traceID() pcommon.TraceID {
	var id [16]byte
	copy(id[:], b.unique(16))
	b.traceIDs = append(b.traceIDs, id)
	return id
}

func (b *builder) spanID() pcommon.SpanID {
	var id [8]byte
	copy(id[:], b.unique(8))
	b.spanIDs = append(b.spanIDs, id)
	return id
}

func (b *builder) responseID() string {
	id := responseIDPrefix + strings.Repeat("0", seqHexLen) + hex.EncodeToString(b.unique(slotHexLen/2))
	b.respIDs = append(b.respIDs, id)
	return id
}

// base is the start time of every trace: 2026-01-01T00:00:00Z.
const base = pcommon.Timestamp(1767225600_000_000_000)

func (b *builder) build() ptrace.Traces {
	cfg := b.cfg
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	res := rs.Resource().Attributes()
	res.PutStr("telemetry.sdk.language", "python")
	res.PutStr("telemetry.sdk.name", "opentelemetry")
	res.PutStr("telemetry.sdk.version", "1.45.2")
	res.PutStr("service.name", "support-chatbot")
	res.PutStr("service.instance.id", "57723e13-7777-4cf5-9176-255691e7d9ed")
	if cfg.Project != "" {
		res.PutStr("openinference.project.name", cfg.Project)
	}

	// One scope per instrumentation, as an SDK batches them.
	app := scope(rs, "support-chatbot", "")
	llmScope := "openinference.instrumentation.openai"
	llmVersion := "0.1.66"
	if cfg.Shape == GenAI {
		llmScope, llmVersion = "opentelemetry.instrumentation.openai_v2", "2.4b0"
	}
	llm := scope(rs, llmScope, llmVersion)
	var httpx ptrace.SpanSlice
	if cfg.ChildSpans > 0 {
		httpx = scope(rs, "opentelemetry.instrumentation.httpx", "0.66b2")
	}

	for i := range cfg.TracesPerExport {
		tid := b.traceID()
		start := base + pcommon.Timestamp(i)*1_000_000
		req := app.AppendEmpty()
		setSpan(req, tid, b.spanID(), pcommon.SpanID{}, "POST /chat", ptrace.SpanKindServer, start, 1_900_000_000)
		a := req.Attributes()
		a.PutStr("http.request.method", "POST")
		a.PutStr("http.route", "/chat")
		a.PutStr("url.path", "/chat")
		a.PutStr("url.scheme", "http")
		a.PutStr("server.address", "chatbot.internal")
		a.PutStr("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36")
		a.PutInt("http.response.status_code", 200)

		l := llm.AppendEmpty()
		respID := b.responseID()
		if cfg.Shape == GenAI {
			setSpan(l, tid, b.spanID(), req.SpanID(), "chat gpt-4o-mini", ptrace.SpanKindClient, start+200_000_000, 1_500_000_000)
			b.genAI(l.Attributes(), respID)
		} else {
			setSpan(l, tid, b.spanID(), req.SpanID(), "ChatCompletion", ptrace.SpanKindInternal, start+200_000_000, 1_500_000_000)
			b.openInference(l.Attributes(), respID)
		}

		for c := range cfg.ChildSpans {
			if c == 0 {
				h := httpx.AppendEmpty()
				setSpan(h, tid, b.spanID(), l.SpanID(), "POST", ptrace.SpanKindClient, start+210_000_000, 1_450_000_000)
				h.Attributes().PutStr("http.method", "POST")
				h.Attributes().PutStr("http.url", "https://api.openai.com/v1/chat/completions")
				h.Attributes().PutInt("http.status_code", 200)
				continue
			}
			s := app.AppendEmpty()
			name := appSpanNames[(c-1)%len(appSpanNames)]
			setSpan(s, tid, b.spanID(), req.SpanID(), name, ptrace.SpanKindInternal, start+pcommon.Timestamp(c)*10_000_000, 150_000_000)
			s.Attributes().PutStr("app.step", name)
			s.Attributes().PutInt("app.documents", 4)
			s.Attributes().PutStr("db.system", "postgresql")
		}
	}
	return td
}

var appSpanNames = []string{"retrieve_documents", "render_prompt", "moderate_answer", "store_conversation"}

func scope(rs ptrace.ResourceSpans, name, version string) ptrace.SpanSlice {
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName(name)
	ss.Scope().SetVersion(version)
	return ss.Spans()
}

func setSpan(s ptrace.Span, tid pcommon.TraceID, sid, parent pcommon.SpanID, name string, kind ptrace.SpanKind, start, dur pcommon.Timestamp) {
	s.SetTraceID(tid)
	s.SetSpanID(sid)
	s.SetParentSpanID(parent)
	s.SetName(name)
	s.SetKind(kind)
	s.SetStartTimestamp(start)
	s.SetEndTimestamp(start + dur)
	s.Status().SetCode(ptrace.StatusCodeOk)
}

const (
	promptTokens     = 412
	completionTokens = 187
)

// openInference sets the attributes openinference-instrumentation-openai
// records on a ChatCompletion span.
func (b *builder) openInference(a pcommon.Map, respID string) {
	question := "In which ocean is Bouvet Island, and how far is it from the nearest land?"
	input := fmt.Sprintf(`{"model": "gpt-4o-mini", "messages": [{"role": "system", "content": %q}, {"role": "user", "content": %q}]}`,
		b.text(b.cfg.InputBytes, "Answer from the documents. "), question)
	// The answer fills output.value up to OutputBytes.
	answer := b.text(b.cfg.OutputBytes-len(completionJSON(respID, "")), "Bouvet Island lies in the South Atlantic Ocean. ")
	a.PutStr("llm.system", "openai")
	a.PutStr("input.value", input)
	a.PutStr("input.mime_type", "application/json")
	a.PutStr("output.value", completionJSON(respID, answer))
	a.PutStr("output.mime_type", "application/json")
	a.PutStr("llm.invocation_parameters", `{"model": "gpt-4o-mini", "temperature": 0.2}`)
	a.PutStr("llm.input_messages.0.message.role", "user")
	a.PutStr("llm.input_messages.0.message.content", question)
	a.PutStr("llm.model_name", "gpt-4o-mini-2024-07-18")
	a.PutInt("llm.token_count.total", promptTokens+completionTokens)
	a.PutInt("llm.token_count.prompt", promptTokens)
	a.PutInt("llm.token_count.completion", completionTokens)
	a.PutInt("llm.token_count.prompt_details.cache_read", 0)
	a.PutInt("llm.token_count.completion_details.reasoning", 0)
	a.PutStr("llm.output_messages.0.message.role", "assistant")
	a.PutStr("llm.output_messages.0.message.content", answer)
	a.PutStr("llm.finish_reason", "stop")
	a.PutStr("openinference.span.kind", "LLM")
}

// genAI sets the attributes of the GenAI conventions; with message content
// capture on, the messages are JSON attributes of the span.
func (b *builder) genAI(a pcommon.Map, respID string) {
	a.PutStr("gen_ai.operation.name", "chat")
	a.PutStr("gen_ai.provider.name", "openai")
	a.PutStr("gen_ai.request.model", "gpt-4o-mini")
	a.PutDouble("gen_ai.request.temperature", 0.2)
	a.PutStr("gen_ai.response.model", "gpt-4o-mini-2024-07-18")
	a.PutStr("gen_ai.response.id", respID)
	a.PutEmptySlice("gen_ai.response.finish_reasons").AppendEmpty().SetStr("stop")
	a.PutInt("gen_ai.usage.input_tokens", promptTokens)
	a.PutInt("gen_ai.usage.output_tokens", completionTokens)
	a.PutStr("openai.response.service_tier", "default")
	if b.cfg.InputBytes > 0 {
		a.PutStr("gen_ai.input.messages", fmt.Sprintf(`[{"role":"user","parts":[{"type":"text","content":%q}]}]`,
			b.text(b.cfg.InputBytes, "Answer from the documents. ")))
	}
	if b.cfg.OutputBytes > 0 {
		a.PutStr("gen_ai.output.messages", fmt.Sprintf(`[{"role":"assistant","parts":[{"type":"text","content":%q}],"finish_reason":"stop"}]`,
			b.text(b.cfg.OutputBytes, "Bouvet Island lies in the South Atlantic Ocean. ")))
	}
}

// completionJSON is an OpenAI chat completion as the openai SDK serialises
// it.
func completionJSON(respID, answer string) string {
	s := fmt.Sprintf(`{"id":%q,"choices":[{"finish_reason":"stop","index":0,"logprobs":null,"message":{"content":%q,"refusal":null,"role":"assistant","annotations":[]}}],"created":1767225600,"model":"gpt-4o-mini-2024-07-18","object":"chat.completion","service_tier":"default","system_fingerprint":"fp_0aa8d3e20b","usage":{"completion_tokens":%d,"prompt_tokens":%d,"total_tokens":%d,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":0,"rejected_prediction_tokens":0},"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":0}}}`,
		respID, answer, completionTokens, promptTokens, promptTokens+completionTokens)
	return s
}

// text returns n bytes of prose: sentence, then words drawn at random, so
// that the answers of one export differ and compress about as well as
// model output does (not to nothing, as copies of one answer would).
func (b *builder) text(n int, sentence string) string {
	if n <= 0 {
		return strings.TrimSpace(sentence)
	}
	var sb strings.Builder
	sb.Grow(n + 16)
	sb.WriteString(sentence)
	for i := 0; sb.Len() < n; i++ {
		w := words[b.rng.IntN(len(words))]
		sb.WriteString(w)
		if i%13 == 12 {
			sb.WriteString(". ")
		} else {
			sb.WriteByte(' ')
		}
	}
	return sb.String()[:n]
}

var words = strings.Fields(`the island is a dependency of Norway and lies about 2,600 kilometres south
west of the Cape of Good Hope it is covered by a glacier and has no permanent population the nearest
land is Queen Maud Land in Antarctica some 1,700 kilometres to the south researchers visit rarely
because landing is difficult weather station seals penguins volcanic crater ice cliffs expedition
nature reserve satellite coordinates longitude latitude documents retrieved answer sources citation`)
