// Package feedback turns feedback sent by response id into Phoenix span
// annotations.
//
// A feedback names only the provider's response id. The [Service] resolves it
// through the index to the LLM span that produced the response, waiting for
// the span when the feedback arrives first (the app's exporter may hold it
// for seconds), and writes the annotation with Phoenix's sync mode, retrying
// while Phoenix has not ingested the span yet. Every feedback ends as
// annotated, failed or expired, and each end is logged and counted.
//
// What the service keeps is bounded in count (MaxPending, MaxFinished) and
// in bytes (MaxBytes, see memory.go for the estimate): pending feedback past
// a bound is refused with 429, ended feedback (kept only for GET) is
// forgotten oldest first.
//
// With a [Store] (see [Service.Restore]) a feedback is on disk before Submit
// returns and until it ends, so a restart, even after SIGKILL, resumes it
// with its original deadline.
package feedback
