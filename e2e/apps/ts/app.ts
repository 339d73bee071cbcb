// A small LLM app in TypeScript, for the end-to-end matrix: the Vercel AI SDK
// (`ai`, with `@ai-sdk/openai`) traced by the SDK's own OpenTelemetry support
// (`experimental_telemetry: { isEnabled: true }`: spans `ai.generateText` >
// `ai.generateText.doGenerate`, `ai.streamText` > `ai.streamText.doStream`),
// exported with the OpenTelemetry JS SDK (BasicTracerProvider,
// BatchSpanProcessor, OTLP/HTTP protobuf).
//
// Like e2e/apps/app.py, a request handler span `handle_request` wraps the
// call; the spans are flushed before exit, and the app prints one JSON line
// {"response_id": ..., "answer": ..., "trace_id": ...}, the response id being
// the SDK's result.response.id.
//
//   node_modules/.bin/tsx app.ts --call chat --base-url http://127.0.0.1:8080/v1 \
//       --endpoint http://127.0.0.1:4318
import { parseArgs } from "node:util";

import { context, diag, DiagConsoleLogger, DiagLogLevel, SpanKind, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, BatchSpanProcessor, type SpanExporter } from "@opentelemetry/sdk-trace-base";
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText, type LanguageModel } from "ai";

const CALLS = ["chat", "chat-stream", "responses", "responses-stream"] as const;
type Call = (typeof CALLS)[number];

const usage = `usage: app.ts --call {${CALLS.join(",")}} --base-url URL --endpoint URL
       [--exporter http] [--project NAME] [--schedule-delay-ms 100] [--model gpt-4o-mini] [--question Q]`;

function die(msg: string): never {
  process.stderr.write(`${msg}\n${usage}\n`);
  process.exit(2);
}

const { values: opts } = parseArgs({
  options: {
    call: { type: "string" },
    exporter: { type: "string", default: "http" },
    endpoint: { type: "string" },
    project: { type: "string" },
    "schedule-delay-ms": { type: "string", default: "100" },
    "base-url": { type: "string" },
    model: { type: "string", default: "gpt-4o-mini" },
    question: { type: "string", default: "In which ocean is Bouvet Island?" },
  },
  strict: true,
});
const call = opts.call as Call;
if (!CALLS.includes(call)) die(`--call must be one of ${CALLS.join(", ")}`);
if (opts.exporter !== "http") die("--exporter: only http (OTLP/HTTP protobuf)");
const baseURL = opts["base-url"] ?? process.env.OPENAI_BASE_URL ?? die("--base-url is required");
const endpoint = opts.endpoint ?? die("--endpoint is required");

// Tracing: the global tracer provider and context manager, which the AI SDK
// uses (trace.getTracer("ai")) when it is given no tracer.
const attributes: Record<string, string> = { "service.name": "feedback-e2e-ts-app" };
if (opts.project) attributes["openinference.project.name"] = opts.project;
let url = endpoint.replace(/\/+$/, "");
if (!url.endsWith("/v1/traces")) url += "/v1/traces";
// reportingFailures says on stderr when an export fails, in the words of the
// Python SDK ("Failed to export"), which the e2e suite looks for: the JS SDK
// itself only tells its diag logger, silent by default.
function reportingFailures(exporter: SpanExporter): SpanExporter {
  return {
    export(spans, done) {
      exporter.export(spans, (result) => {
        // ExportResultCode.SUCCESS (@opentelemetry/core) is 0.
        if (result.code !== 0) {
          process.stderr.write(`Failed to export ${spans.length} spans to ${url}: ${result.error ?? "unknown error"}\n`);
        }
        done(result);
      });
    },
    shutdown: () => exporter.shutdown(),
    forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
  };
}
diag.setLogger(new DiagConsoleLogger(), DiagLogLevel.WARN);
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes(attributes),
  spanProcessors: [
    new BatchSpanProcessor(reportingFailures(new OTLPTraceExporter({ url })), {
      scheduledDelayMillis: Number(opts["schedule-delay-ms"]),
    }),
  ],
});
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
trace.setGlobalTracerProvider(provider);

const openai = createOpenAI({ baseURL, apiKey: process.env.OPENAI_API_KEY || "sk-dummy" });
const model: LanguageModel = call.startsWith("chat") ? openai.chat(opts.model) : openai.responses(opts.model);
const telemetry = { isEnabled: true };

// ask makes one call and returns (response id, answer text).
async function ask(): Promise<[string, string]> {
  const maxRetries = 0;
  if (call.endsWith("-stream")) {
    const result = streamText({ model, prompt: opts.question, maxRetries, experimental_telemetry: telemetry });
    let text = "";
    for await (const part of result.textStream) text += part;
    return [(await result.response).id, text];
  }
  const result = await generateText({ model, prompt: opts.question, maxRetries, experimental_telemetry: telemetry });
  return [result.response.id, result.text];
}

const tracer = trace.getTracer("feedback-e2e-ts-app");
let result: string;
try {
  result = await tracer.startActiveSpan("handle_request", { kind: SpanKind.SERVER }, async (span) => {
    try {
      const [responseID, answer] = await ask();
      return JSON.stringify({ response_id: responseID, answer, trace_id: span.spanContext().traceId });
    } finally {
      span.end();
    }
  });
} finally {
  // Export everything before exiting: shutdown flushes the batch processor.
  await provider.forceFlush();
  await provider.shutdown();
}
process.stdout.write(result + "\n");
