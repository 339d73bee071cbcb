package otlp

import (
	"testing"

	"go.uber.org/goleak"
)

// The receiver and the exporter start goroutines (servers, connections);
// every test must leave none behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
