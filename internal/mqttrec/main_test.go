package mqttrec

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test ends with its connections' goroutines gone (STYLE.md rule 10).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
