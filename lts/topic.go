package lts

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxTopicLength is the longest topic name or filter MQTT can carry: a UTF-8
// string's length is a two-byte integer [MQTT-1.5.4].
const MaxTopicLength = 65535

// ValidateTopicName checks a topic name as carried by PUBLISH or a will:
// non-empty, at most MaxTopicLength bytes, valid UTF-8 without U+0000, and no
// '+' or '#' anywhere. Empty levels ("a//b", "/a") and names starting with
// '$' are allowed. If maxLevels > 0, a name with more levels is refused with
// ErrTooManyLevels. The returned error wraps one of the topic sentinels.
//
// Stripping a "$share/{group}/" prefix is the caller's business: it is not
// part of the topic filter that reaches this package.
func ValidateTopicName(name string, maxLevels int) error {
	return validateTopic(name, maxLevels, false)
}

// ValidateTopicFilter checks a topic filter as carried by SUBSCRIBE or
// UNSUBSCRIBE: the rules of ValidateTopicName, except that '+' may occupy a
// whole level anywhere and '#' may occupy the last level only.
func ValidateTopicFilter(filter string, maxLevels int) error {
	return validateTopic(filter, maxLevels, true)
}

func validateTopic(s string, maxLevels int, isFilter bool) error {
	if len(s) == 0 {
		return ErrEmptyTopic
	}
	if len(s) > MaxTopicLength {
		return fmt.Errorf("%w: %d bytes", ErrTopicTooLong, len(s))
	}
	if !utf8.ValidString(s) {
		off := 0
		for off < len(s) {
			r, size := utf8.DecodeRuneInString(s[off:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			off += size
		}
		return fmt.Errorf("%w: at byte %d", ErrInvalidUTF8, off)
	}
	level, start, wild := 0, 0, false
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			switch s[i] {
			case 0:
				return fmt.Errorf("%w: at byte %d", ErrNullCharacter, i)
			case '+', '#':
				wild = true
				continue
			case '/':
			default:
				continue
			}
		}
		// s[start:i] is a complete level.
		if wild {
			lv := s[start:i]
			switch {
			case !isFilter:
				return fmt.Errorf("%w: level %d is %q", ErrWildcardInTopicName, level, lv)
			case lv != "+" && lv != "#":
				return fmt.Errorf("%w: level %d is %q", ErrWildcardNotWholeLevel, level, lv)
			case lv == "#" && i < len(s):
				return fmt.Errorf("%w: '#' is level %d of a longer filter", ErrMultiLevelNotLast, level)
			}
			wild = false
		}
		level++
		if maxLevels > 0 && level > maxLevels {
			return fmt.Errorf("%w: more than %d", ErrTooManyLevels, maxLevels)
		}
		start = i + 1
	}
	return nil
}

// SplitTopic splits a topic name or filter into its levels. An empty level
// stays an empty string: "/a//" has the levels "", "a", "", "".
func SplitTopic(topic string) []string {
	return strings.Split(topic, "/")
}

// MatchTopic reports whether the topic name matches the topic filter, by the
// plain rules of MQTT 5 section 4.7: '+' matches exactly one level (an
// empty one too), '#' matches the parent level and any number of levels
// below it ("a/#" matches "a"), and a filter whose first level is a wildcard
// does not match a name starting with '$' [MQTT-4.7.2-1]. Both arguments are
// assumed valid; for invalid input the answer is unspecified but MatchTopic
// does not panic. It does not allocate.
func MatchTopic(filter, topic string) bool {
	if len(topic) > 0 && topic[0] == '$' && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		t, trest, tmore := strings.Cut(topic, "/")
		if f != "+" && f != t {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			// The topic ends here: only a trailing "/#" still matches.
			return frest == "#"
		case !fmore:
			return false
		}
		filter, topic = frest, trest
	}
}

// FiltersOverlap reports whether some topic name matches both topic
// filters (MatchTopic's rules), so that a subscriber holding both may be
// sent one message for two subscriptions. Both filters are assumed valid.
// It does not allocate.
func FiltersOverlap(a, b string) bool {
	// A name starting with '$' is matched only by filters whose first
	// level starts with '$' (never by a wildcard), and such a filter
	// matches no other name.
	if strings.HasPrefix(a, "$") != strings.HasPrefix(b, "$") {
		return false
	}
	for {
		x, arest, amore := strings.Cut(a, "/")
		y, brest, bmore := strings.Cut(b, "/")
		if x == "#" || y == "#" {
			return true
		}
		if x != "+" && y != "+" && x != y {
			return false
		}
		switch {
		case !amore && !bmore:
			return true
		case !amore:
			return brest == "#" // "a" and "a/#"
		case !bmore:
			return arest == "#"
		}
		a, b = arest, brest
	}
}
