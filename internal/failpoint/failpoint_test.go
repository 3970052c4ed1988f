package failpoint

import "testing"

func TestParse(t *testing.T) {
	p, err := Parse("a, b=3,,c=1")
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 3 || p["a"].Load() != 1 || p["b"].Load() != 3 || p["c"].Load() != 1 {
		t.Fatalf("parsed %v", p)
	}
	for _, bad := range []string{"a=0", "a=x", "b=-1"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q): no error", bad)
		}
	}
}

func TestHitUnarmedDoesNothing(t *testing.T) {
	Hit("anything") // the test process has no STRATA_FAILPOINTS: it must live on
}
