package queue

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/crashtest"
)

// Next waits in goroutines; every test must leave none behind. The crash
// test runs this binary again as the process it kills.
func TestMain(m *testing.M) {
	crashtest.Main(map[string]crashtest.Child{"append": crashChild})
	goleak.VerifyTestMain(m)
}
