package forward

import (
	"testing"

	"go.uber.org/goleak"
)

// The delivery loop runs in a goroutine of its own; Stop must end it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
