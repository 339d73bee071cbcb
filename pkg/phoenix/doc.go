// Package phoenix is a client for the Phoenix REST API: span and trace annotations, reading spans
// back, and finding the span that carries a provider's response id (SpansByResponseID).
//
// It speaks to Arize Phoenix as its server answers (checked against arize-phoenix 20.26.1, see
// testdata/README.md): annotations are written with sync=true so that an unknown span is a 404
// the caller can retry, instead of a 200 after which Phoenix may drop the annotation silently.
package phoenix
