package feedback_test

import (
	"testing"

	"go.uber.org/goleak"
)

// The service writes annotations from goroutines of its own; Shutdown must
// leave none behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
