package session_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives its test: Engine.Close must end every goroutine the
// Engine started (the loop, dials, cancel requests).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
