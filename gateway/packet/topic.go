package packet

import (
	"strings"

	"github.com/stratamq/strata/lts"
)

// The topic name and topic filter rules of section 4.7 live in lts, which
// the whole system shares; this file maps its errors to reason codes and
// adds the MQTT 5.0 shared subscription syntax of section 4.8.2, which lts
// leaves to its callers.

// sharePrefix starts a shared subscription filter in MQTT 5.0.
const sharePrefix = "$share/"

// ValidateTopicName returns TopicNameInvalid unless name is a valid Topic
// Name: at least one character [MQTT-4.7.3-1], no wildcard characters
// [MQTT-3.3.2-2] [MQTT-4.7.1-1], well-formed UTF-8 without U+0000
// [MQTT-1.5.4-1] [MQTT-1.5.4-2] and at most 65,535 bytes [MQTT-4.7.3-3].
func ValidateTopicName(name string) error {
	if lts.ValidateTopicName(name, 0) != nil {
		return TopicNameInvalid
	}
	return nil
}

// ValidateTopicFilter returns TopicFilterInvalid unless filter is a valid
// Topic Filter for version v: at least one character [MQTT-4.7.3-1], '#'
// only as the whole last level [MQTT-4.7.1-2], '+' only as a whole level
// [MQTT-4.7.1-3], well-formed UTF-8 without U+0000 and at most 65,535
// bytes. A filter starting "$share/" is a shared subscription and needs a
// Share Name of at least one character with no '/', '+' or '#' followed by
// '/' and a valid filter [MQTT-4.8.2-1] [MQTT-4.8.2-2]: in MQTT 5.0, and in
// 3.1.1 too, as EMQX and HiveMQ accept it there (v is kept for the rules
// that differ).
func ValidateTopicFilter(filter string, v Version) error {
	_ = v
	if share, rest, ok := SplitShared(filter); ok {
		if share == "" || strings.ContainsAny(share, "+#") {
			return TopicFilterInvalid
		}
		filter = rest
	} else if strings.HasPrefix(filter, sharePrefix) {
		return TopicFilterInvalid
	}
	if lts.ValidateTopicFilter(filter, 0) != nil {
		return TopicFilterInvalid
	}
	return nil
}

// SplitShared splits an MQTT 5.0 shared subscription filter
// "$share/{ShareName}/{filter}" (section 4.8.2) into the Share Name and the
// filter. ok is false if filter does not have that shape.
func SplitShared(filter string) (share, rest string, ok bool) {
	after, found := strings.CutPrefix(filter, sharePrefix)
	if !found {
		return "", "", false
	}
	share, rest, ok = strings.Cut(after, "/")
	return share, rest, ok
}
