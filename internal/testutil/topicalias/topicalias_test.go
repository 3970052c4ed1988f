package topicalias

import "testing"

func TestResolve(t *testing.T) {
	one, three := uint16(1), uint16(3)
	tb := New(2)
	for _, c := range []struct {
		topic     string
		alias     *uint16
		want      string
		aliasOnly bool
		err       bool
	}{
		{topic: "a/b", want: "a/b"},
		{topic: "", alias: &one, err: true, aliasOnly: true}, // never set
		{topic: "a/b", alias: &one, want: "a/b"},
		{topic: "", alias: &one, want: "a/b", aliasOnly: true},
		{topic: "c/d", alias: &one, want: "c/d"}, // reassigned
		{topic: "", alias: &one, want: "c/d", aliasOnly: true},
		{topic: "x", alias: &three, err: true}, // above the maximum
		{topic: "", err: true},
	} {
		got, aliasOnly, err := tb.Resolve(c.topic, c.alias)
		if (err != nil) != c.err || got != c.want || aliasOnly != c.aliasOnly {
			t.Errorf("Resolve(%q, %v) = %q, %t, %v; want %q, %t, error %t", c.topic, c.alias, got, aliasOnly, err, c.want, c.aliasOnly, c.err)
		}
	}
}
