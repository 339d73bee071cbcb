package extract

import (
	"os"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// TestExtractCaptured runs the extractor on what the real Python
// instrumentations (on the SDKs, LiteLLM and LangChain), and the Vercel AI SDK, exported (testdata/capture, made by `go run ./e2e/capture`;
// its README says how and with which versions). The ids and span ids below
// are those the capture printed; a re-capture changes them.
func TestExtractCaptured(t *testing.T) {
	tests := []struct {
		file, responseID, spanID, spanName string
	}{
		{"openinference-chat.binpb", "chatcmpl-00000001851ab9318aa029468db51", "e18f7544ae406947", "ChatCompletion"},
		{"openinference-chat-stream.binpb", "chatcmpl-000000024429632738ac92a8c84fc", "23e48067f6a74575", "ChatCompletion"},
		{"openinference-responses.binpb", "resp_00000003f20d168a91a774ec4030d49e34412e48dbaffabe53", "4cc6bd7d8712363e", "Response"},
		{"openinference-responses-stream.binpb", "resp_00000005e5ba7e772a2e3d535a6f1d53135a7d2a55a36873ce", "6e5a3ca025bf31fe", "Response"},
		{"openai-v2-chat.binpb", "chatcmpl-000000077be8fb8f2b7fcdcdb7be8", "02fa3872fe5d047a", "chat gpt-4o-mini"},
		{"openai-v2-chat-stream.binpb", "chatcmpl-000000086f3d3582fe4364d40332f", "7226668f73a9ce7d", "chat gpt-4o-mini"},
		// openai-v2 2.4b0 does not instrument the Responses API: no LLM span, no id.
		{"openai-v2-responses.binpb", "", "", ""},
		{"openai-v2-responses-stream.binpb", "", "", ""},
		// LiteLLM through OpenInference: output.value is the answer's text, the id is nowhere.
		{"litellm-openinference-chat.binpb", "", "", ""},
		{"litellm-openinference-chat-stream.binpb", "", "", ""},
		// LiteLLM through OpenLLMetry (opentelemetry-instrumentation-litellm): gen_ai.response.id.
		{"litellm-openllmetry-chat.binpb", "chatcmpl-0000000f490d8357ac549ad243dc1", "3c13b226c34986bd", "litellm.chat"},
		{"litellm-openllmetry-chat-stream.binpb", "chatcmpl-00000010c5449d9c0b639d2592c8a", "8bcda8ae1fd77b18", "litellm.chat"},
		// LangChain through OpenInference: the LLM run ChatOpenAI, whose
		// output.value (the LLMResult) holds the id at
		// generations[0][0].message.kwargs.response_metadata.id; the chain
		// run RunnableSequence around it carries it too, in its AIMessage,
		// but is no LLM span. Streamed chat completions carry no id at all
		// (the app printed LangChain's run id, the server issued
		// chatcmpl-00000012b2851798da9f71b1d23b1).
		{"langchain-openinference-chat.binpb", "chatcmpl-00000011e73f9aab71fa4bde59b83", "56a791412c9a289e", "ChatOpenAI"},
		{"langchain-openinference-chat-stream.binpb", "", "", ""},
		{"langchain-openinference-responses.binpb", "resp_00000013b014ea17d880fea787cc160e8a6bb32744f5f11e6e", "b3fc671ae595faa9", "ChatOpenAI"},
		{"langchain-openinference-responses-stream.binpb", "resp_000000155105ef584482840b4b9ccdf63ffb91bb9d9fe63985", "9404dd118ef4170e", "ChatOpenAI"},
		// Anthropic through OpenInference: the Message JSON in output.value, "id" first.
		{"anthropic-openinference-chat.binpb", "msg_0100000NLymsNGY0nluLAwjs", "0a385214fcdf8b17", "messages.create"},
		{"anthropic-openinference-chat-stream.binpb", "msg_0100000OTW94HIn9XYrlxSYn", "6cbf36c1bdee4a47", "messages.create"},
		// Through OpenLLMetry (opentelemetry-instrumentation-anthropic): gen_ai.response.id, the HTTP span beside it.
		{"anthropic-openllmetry-chat.binpb", "msg_0100000PUcDWzOoyZChABPpn", "df9b790731648b2c", "anthropic.chat"},
		{"anthropic-openllmetry-chat-stream.binpb", "msg_0100000QGKY2usqIqCjvpBib", "ae2d0f20bb22ceef", "anthropic.chat"},
		// The anthropic SDK's own tracing: gen_ai.response.id.
		{"anthropic-sdk-chat.binpb", "msg_0100000R9f8S97D8kfEx09Xa", "6d15c33ee8506492", "anthropic.messages.create"},
		{"anthropic-sdk-chat-stream.binpb", "msg_0100000SVNrH3Jd2SMYGENM8", "6c431b55b62d38ec", "anthropic.messages.create"},
		// google-genai through OpenInference: "response_id" at the top level of
		// output.value, not first: after sdk_http_response, candidates and
		// model_version (plain), next to last (streamed).
		{"google-openinference-chat.binpb", "AAAAAdktJ-gEQLk2B2MpuGY", "3fb83bcda4fadeeb", "GenerateContent"},
		{"google-openinference-chat-stream.binpb", "AAAAAegPL3RdTBeI0A4XurY", "37ed8e26ca56f7fb", "GenerateContentStream"},
		// The Vercel AI SDK (TypeScript app, OpenTelemetry JS SDK): gen_ai.response.id
		// (and ai.response.id) on the inner span of the provider call only; the
		// outer ai.generateText / ai.streamText span has neither (for the Responses
		// API the id is in its ai.response.providerMetadata JSON, which is not read).
		{"vercel-ai-sdk-chat.binpb", "chatcmpl-0000001f4a789722d88a1157420fb", "5a1ef1d6d5677e49", "ai.generateText.doGenerate"},
		{"vercel-ai-sdk-chat-stream.binpb", "chatcmpl-0000002042b0948f59670c2d2f71b", "16b53a9657d5252b", "ai.streamText.doStream"},
		{"vercel-ai-sdk-responses.binpb", "resp_00000021e79a4cc623cdfa0ea062c5f4dacbc6651f9bdd1661", "5fd9b797fbcc8f6f", "ai.generateText.doGenerate"},
		{"vercel-ai-sdk-responses-stream.binpb", "resp_00000023f270dbf996e9c12aa70d0b6e73823de59f0ed19b22", "8aed738c457892f5", "ai.streamText.doStream"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("testdata", "capture", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			req := ptraceotlp.NewExportRequest()
			if err := req.UnmarshalProto(body); err != nil {
				t.Fatal(err)
			}
			got := Extractor{}.Extract(req.Traces(), "")
			if tt.responseID == "" {
				if len(got) != 0 {
					t.Fatalf("found %+v in an export where no span carries the response id", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("found %d response ids, want 1: %+v", len(got), got)
			}
			e := got[0]
			if e.ResponseID != tt.responseID || e.Span.SpanID.String() != tt.spanID || e.Span.Name != tt.spanName || e.Span.Project != DefaultProject {
				t.Errorf("got %s -> span %s %q in %q; want %s -> span %s %q in default",
					e.ResponseID, e.Span.SpanID, e.Span.Name, e.Span.Project, tt.responseID, tt.spanID, tt.spanName)
			}
		})
	}
}
