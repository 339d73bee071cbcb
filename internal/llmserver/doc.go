// Package llmserver is a deterministic LLM API server for tests and the demo.
//
// It speaks three providers' APIs, with the JSON shapes and stream events their
// official Python SDKs parse, so that the SDKs and the instrumentations that
// wrap them behave as they do against the real services:
//
//   - OpenAI (openai 3.x): POST /v1/chat/completions and POST /v1/responses,
//     streaming or not, and GET /v1/models; ids chatcmpl-... and resp_....
//   - Anthropic (anthropic 2.x): POST /v1/messages, plain or "stream": true
//     (message_start ... message_stop events); ids msg_01 + 22 base62 chars.
//   - Gemini (google-genai 3.x): POST /v1beta/models/{model}:generateContent
//     and :streamGenerateContent?alt=sse; each answer's responseId is 23
//     base64url characters.
//
// Answers depend only on the request. Response ids are unique per call and
// recorded (Calls, LastID, LastIDOf), so a test can tell which id an app was
// given. BaseURL gives each SDK's base URL. testdata/sdkcheck.py checks the
// Anthropic and Gemini answers against their SDKs.
package llmserver
