//go:build !failpoints

package failpoint

import "testing"

// TestOffWithoutTheTag: without the failpoints build tag (release builds)
// nothing is armed, whatever the environment says.
func TestOffWithoutTheTag(t *testing.T) {
	if Enabled || Armed() {
		t.Fatalf("Enabled %v, Armed %v without the failpoints tag", Enabled, Armed())
	}
}
