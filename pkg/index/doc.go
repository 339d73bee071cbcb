// Package index remembers which span produced each LLM response.
//
// The proxy sees every span an app exports. [Extractor.ExtractProto] finds
// the provider's response id on an LLM span (the GenAI attribute
// gen_ai.response.id, or the "id" ("response_id" for Google's answers)
// inside OpenInference's output.value, or, where that holds LangChain's
// LLMResult, its generations[0][0].message.kwargs.response_metadata.id),
// reading the export in protobuf where it lies, and [Index] keeps response id ->
// span, bounded in count and age, so that feedback sent later with only the
// response id can be written onto that exact span. With a [Store] (see
// [Index.Restore]) the index outlives a restart.
package index
