// Package extract finds the provider's response id on LLM spans.
//
// [Extractor.ExtractProto] reads an OTLP trace export in protobuf where it
// lies (pkg/otlp/wire) and returns one index.Entry per response id found on
// an LLM span: the GenAI attribute gen_ai.response.id, or the "id"
// ("response_id" for Google's answers) inside OpenInference's output.value,
// or, where that holds LangChain's LLMResult, its
// generations[0][0].message.kwargs.response_metadata.id; and the string
// values of attribute keys the operator names. The captured payloads of
// real instrumentations in testdata/capture hold it to what they send.
package extract
