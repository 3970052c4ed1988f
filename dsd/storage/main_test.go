package storage

import (
	"flag"
	"testing"

	"go.uber.org/goleak"

	"github.com/stratamq/strata/internal/testutil"
)

// long enables the long variants of the crash and model tests (also
// STRATA_TORTURE=1).
var long = flag.Bool("long", false, "run the long crash and model test variants")

func torture() bool { return *long || testutil.Torture() }

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
