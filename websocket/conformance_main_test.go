package websocket_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's external tests if any goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
