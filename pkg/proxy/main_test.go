package proxy

import (
	"testing"

	"go.uber.org/goleak"
)

// The proxy serves from goroutines of its own; Shutdown (and a failed
// Start) must leave none behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
