package feedback_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/feedbackproxy/phoenix-feedback-proxy/internal/crashtest"
)

// The service writes annotations from goroutines of its own; Shutdown must
// leave none behind. TestCrash runs this binary again as the proxy it kills.
func TestMain(m *testing.M) {
	crashtest.Main(map[string]crashtest.Child{"feedback": crashChild})
	goleak.VerifyTestMain(m)
}
