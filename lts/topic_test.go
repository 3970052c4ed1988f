package lts

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidateTopic(t *testing.T) {
	long := strings.Repeat("a", MaxTopicLength)
	for _, tc := range []struct {
		topic      string
		nameErr    error // nil: valid topic name
		filterErr  error // nil: valid topic filter
		maxLevels  int
		skipFilter bool
	}{
		{topic: "a"},
		{topic: "a/b/c"},
		{topic: "/"},
		{topic: "//"},
		{topic: "/a/"},
		{topic: "$SYS/broker"},
		{topic: "a b/ü/日本"},
		{topic: long},
		{topic: "", nameErr: ErrEmptyTopic, filterErr: ErrEmptyTopic},
		{topic: long + "a", nameErr: ErrTopicTooLong, filterErr: ErrTopicTooLong},
		{topic: "a/\xff", nameErr: ErrInvalidUTF8, filterErr: ErrInvalidUTF8},
		{topic: "a/\xed\xa0\x80", nameErr: ErrInvalidUTF8, filterErr: ErrInvalidUTF8}, // U+D800
		{topic: "a\x00b", nameErr: ErrNullCharacter, filterErr: ErrNullCharacter},
		{topic: "+", nameErr: ErrWildcardInTopicName},
		{topic: "#", nameErr: ErrWildcardInTopicName},
		{topic: "a/+/b", nameErr: ErrWildcardInTopicName},
		{topic: "a/#", nameErr: ErrWildcardInTopicName},
		{topic: "+/+/#", nameErr: ErrWildcardInTopicName},
		{topic: "/#", nameErr: ErrWildcardInTopicName},
		{topic: "$SYS/#", nameErr: ErrWildcardInTopicName},
		{topic: "a+", nameErr: ErrWildcardInTopicName, filterErr: ErrWildcardNotWholeLevel},
		{topic: "a/b#", nameErr: ErrWildcardInTopicName, filterErr: ErrWildcardNotWholeLevel},
		{topic: "a/#b", nameErr: ErrWildcardInTopicName, filterErr: ErrWildcardNotWholeLevel},
		{topic: "++", nameErr: ErrWildcardInTopicName, filterErr: ErrWildcardNotWholeLevel},
		{topic: "#/a", nameErr: ErrWildcardInTopicName, filterErr: ErrMultiLevelNotLast},
		{topic: "a/#/", nameErr: ErrWildcardInTopicName, filterErr: ErrMultiLevelNotLast},
		{topic: "a/b/c", maxLevels: 3},
		{topic: "a/b/c/d", maxLevels: 3, nameErr: ErrTooManyLevels, filterErr: ErrTooManyLevels},
		{topic: "///", maxLevels: 3, nameErr: ErrTooManyLevels, filterErr: ErrTooManyLevels},
	} {
		err := ValidateTopicName(tc.topic, tc.maxLevels)
		if !errors.Is(err, tc.nameErr) || (err == nil) != (tc.nameErr == nil) {
			t.Errorf("ValidateTopicName(%.20q) = %v, want %v", tc.topic, err, tc.nameErr)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "lts: ") {
			t.Errorf("error %q lacks the lts: prefix", err)
		}
		err = ValidateTopicFilter(tc.topic, tc.maxLevels)
		if !errors.Is(err, tc.filterErr) || (err == nil) != (tc.filterErr == nil) {
			t.Errorf("ValidateTopicFilter(%.20q) = %v, want %v", tc.topic, err, tc.filterErr)
		}
	}
}

func TestValidateTopicErrorDetail(t *testing.T) {
	err := ValidateTopicFilter("a/b+/c", 0)
	if got, want := err.Error(), `lts: wildcard does not occupy a whole level: level 1 is "b+"`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestMatchTopic(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a", false},
		{"a/+", "a/", true},
		{"a/+", "a/b/c", false},
		{"a/#", "a", true},
		{"a/#", "a/", true},
		{"a/#", "a/b/c", true},
		{"a/#", "b", false},
		{"#", "a", true},
		{"#", "/", true},
		{"+", "/", false},
		{"+/+", "/", true},
		{"/+", "/a", true},
		{"+/#", "a", true},
		{"#", "$SYS/a", false},
		{"+/a", "$SYS/a", false},
		{"$SYS/#", "$SYS", true},
		{"$SYS/#", "$SYS/a/b", true},
		{"$SYS/+", "$SYS/a", true},
		{"a//b", "a//b", true},
		{"a/+/b", "a//b", true},
		{"a/b/", "a/b", false},
		{"a/b", "a/b/", false},
	} {
		if got := MatchTopic(tc.filter, tc.topic); got != tc.want {
			t.Errorf("MatchTopic(%q, %q) = %v, want %v", tc.filter, tc.topic, got, tc.want)
		}
	}
}

// naiveMatch is a second, deliberately different matcher: level slices and
// recursion.
func naiveMatch(filter, topic []string) bool {
	if len(topic) > 0 && strings.HasPrefix(topic[0], "$") && len(filter) > 0 && (filter[0] == "+" || filter[0] == "#") {
		return false
	}
	var rec func(f, tp []string) bool
	rec = func(f, tp []string) bool {
		if len(f) == 0 {
			return len(tp) == 0
		}
		if f[0] == "#" {
			return true
		}
		if len(tp) == 0 {
			return false
		}
		return (f[0] == "+" || f[0] == tp[0]) && rec(f[1:], tp[1:])
	}
	return rec(filter, topic)
}

func FuzzValidateTopic(f *testing.F) {
	for _, s := range []string{"a/b", "", "/", "a/+", "$SYS/x", "a\x00", "\xff", "日本/語"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateTopicName(s, 0)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "lts: ") {
				t.Fatalf("unprefixed error %q", err)
			}
			return
		}
		// A valid name is a valid filter that matches itself.
		if ferr := ValidateTopicFilter(s, 0); ferr != nil {
			t.Fatalf("valid name %q is not a valid filter: %v", s, ferr)
		}
		if !utf8.ValidString(s) || strings.ContainsAny(s, "+#\x00") || s == "" {
			t.Fatalf("accepted %q", s)
		}
		if !MatchTopic(s, s) || !naiveMatch(SplitTopic(s), SplitTopic(s)) {
			t.Fatalf("%q does not match itself", s)
		}
		levels := len(SplitTopic(s))
		if ValidateTopicName(s, levels) != nil || !errors.Is(ValidateTopicName(s, levels-1), ErrTooManyLevels) && levels > 1 {
			t.Fatalf("level cap wrong for %q (%d levels)", s, levels)
		}
	})
}

func FuzzValidateFilter(f *testing.F) {
	for _, s := range []string{"a/#", "+/+", "#", "a/#/b", "a+", "$SYS/#", "/+/", ""} {
		f.Add(s, "a/b")
	}
	f.Fuzz(func(t *testing.T, filter, topic string) {
		err := ValidateTopicFilter(filter, 0)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "lts: ") {
				t.Fatalf("unprefixed error %q", err)
			}
			return
		}
		levels := SplitTopic(filter)
		for i, l := range levels {
			if strings.ContainsAny(l, "+#") && l != "+" && !(l == "#" && i == len(levels)-1) {
				t.Fatalf("accepted %q", filter)
			}
		}
		if ValidateTopicName(topic, 0) != nil {
			return
		}
		if got, want := MatchTopic(filter, topic), naiveMatch(levels, SplitTopic(topic)); got != want {
			t.Fatalf("MatchTopic(%q, %q) = %v, naive %v", filter, topic, got, want)
		}
	})
}

func TestFiltersOverlap(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "+/b", true},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"a/+", "a", false},
		{"a/+/c", "a/b/+", true},
		{"a/+/c", "a/b/d", false},
		{"#", "a/b", true},
		{"#", "$SYS/a", false},
		{"+/a", "$SYS/a", false},
		{"$SYS/#", "$SYS/a", true},
		{"a/b/c", "a/b", false},
		{"a/b", "a/b/#", true},
		{"a/b", "a/b/+", false},
	} {
		if got := FiltersOverlap(tc.a, tc.b); got != tc.want {
			t.Errorf("FiltersOverlap(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := FiltersOverlap(tc.b, tc.a); got != tc.want {
			t.Errorf("FiltersOverlap(%q, %q) = %v, want %v", tc.b, tc.a, got, tc.want)
		}
	}
}

// TestFiltersOverlapByWitness checks FiltersOverlap on every pair of small
// filters against a search for a topic both match: with filters of at most
// three levels, a witness, if any, has at most three levels of these words.
func TestFiltersOverlapByWitness(t *testing.T) {
	words := []string{"x", "y", "$s", ""}
	var topics []string
	var grow func(prefix string, depth int)
	grow = func(prefix string, depth int) {
		for _, w := range words {
			tp := w
			if depth > 0 {
				tp = prefix + "/" + w
			}
			topics = append(topics, tp)
			if depth < 2 {
				grow(tp, depth+1)
			}
		}
	}
	grow("", 0)
	var filters []string
	var growF func(prefix string, depth int)
	growF = func(prefix string, depth int) {
		for _, w := range []string{"x", "$s", "+", "#"} {
			f := w
			if depth > 0 {
				f = prefix + "/" + w
			}
			if ValidateTopicFilter(f, 0) != nil {
				continue
			}
			filters = append(filters, f)
			if depth < 2 && w != "#" {
				growF(f, depth+1)
			}
		}
	}
	growF("", 0)
	for _, a := range filters {
		for _, b := range filters {
			want := slices.ContainsFunc(topics, func(tp string) bool { return MatchTopic(a, tp) && MatchTopic(b, tp) })
			if got := FiltersOverlap(a, b); got != want {
				t.Errorf("FiltersOverlap(%q, %q) = %v, a topic matching both exists: %v", a, b, got, want)
			}
		}
	}
}
