// Package evaluation takes OpenTelemetry GenAI evaluation events as
// feedback.
//
// The GenAI semantic conventions define the event gen_ai.evaluation.result
// (semantic-conventions v1.38.0 to v1.41.x, model/gen-ai/events.yaml; the
// GenAI conventions have since moved, unchanged for this event, to
// open-telemetry/semantic-conventions-genai): the result of evaluating a
// GenAI output, carried in an OTLP log record, with the attributes
//
//	gen_ai.evaluation.name         required   the metric, e.g. "Relevance"
//	gen_ai.evaluation.score.value  if any     a double
//	gen_ai.evaluation.score.label  if any     e.g. "relevant", "pass"
//	gen_ai.evaluation.explanation  recommended
//	gen_ai.response.id             recommended: the evaluated completion's id
//	error.type                     if the evaluation itself failed
//
// An app that already emits OpenTelemetry can so send a user's vote with the
// SDK it has: [FromLogs] turns each such event into the [feedback.Feedback]
// POST /feedback would take, and [Consumer] hands them to the feedback
// service from the receiver's OTLP logs endpoints, with the same guarantees.
//
// The proxy finds the span by the response id, so an event without
// gen_ai.response.id is rejected (the conventions also allow parenting the
// event to the evaluated span instead). Log records that are not such events
// are rejected too: the proxy is not a log pipeline, and Phoenix takes no
// logs. Rejected records are reported to the client in OTLP's partial
// success, never dropped silently.
package evaluation
