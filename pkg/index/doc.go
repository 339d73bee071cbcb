// Package index remembers which span produced each LLM response.
//
// pkg/extract finds the provider's response id on the LLM spans an app
// exports; [Index] keeps response id -> span, bounded in count and age, so
// that feedback sent later with only the response id can be written onto
// that exact span. When several spans carry one id, the innermost wins
// ([InnerThan], [Innermost]). With a [Store] (see [Index.Restore]) the index
// outlives a restart.
package index
