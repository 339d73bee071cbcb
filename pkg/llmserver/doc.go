// Package llmserver is a deterministic OpenAI-compatible server for tests and the demo.
//
// It answers POST /v1/chat/completions and POST /v1/responses, streaming or not,
// and GET /v1/models, with the JSON shapes of the OpenAI API as the official
// Python SDK (openai 3.x) parses them, so the SDK and the instrumentations that
// wrap it (OpenInference, opentelemetry-instrumentation-openai-v2) behave as
// they do against api.openai.com. Answers depend only on the request; response
// ids (chatcmpl-..., resp_..., msg_...) are unique per call and recorded, so a
// test can tell which id an app was given.
package llmserver
