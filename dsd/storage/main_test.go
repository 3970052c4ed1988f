package storage

import (
	"flag"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// long enables the long variants of the crash and model tests (also
// STRATA_TORTURE=1).
var long = flag.Bool("long", false, "run the long crash and model test variants")

func torture() bool { return *long || os.Getenv("STRATA_TORTURE") == "1" }

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
