package queue

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Next waits in goroutines; every test must leave none behind. The crash
// test runs this binary again as the process it kills.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	goleak.VerifyTestMain(m)
}
