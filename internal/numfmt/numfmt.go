// Package numfmt formats the figures of the measuring tools' reports
// (tools/benchcmp, tools/fleetbench) the way docs/benchmarks.md writes them.
package numfmt

import (
	"strconv"
	"strings"
)

// Thousands formats n with a comma between groups of three digits:
// 1234567 is "1,234,567".
func Thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
