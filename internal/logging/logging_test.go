package logging

import (
	"bytes"
	"strings"
	"testing"
)

func TestLevels(t *testing.T) {
	var b bytes.Buffer
	log, err := New(&b, "warn")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown")
	if out := b.String(); strings.Contains(out, "hidden") || !strings.Contains(out, "shown") {
		t.Fatalf("warn level wrote %q", out)
	}
	b.Reset()
	if log, err = New(&b, "DEBUG"); err != nil {
		t.Fatal(err)
	}
	log.Debug("details")
	if !strings.Contains(b.String(), "details") {
		t.Fatalf("debug level wrote %q", b.String())
	}
	if _, err := New(&b, "verbose"); err == nil {
		t.Fatal("level verbose accepted")
	}
}
