// Package logging builds the programs' loggers: slog text to stderr at a
// level chosen with --log-level, so an operator can turn on the debug
// lines (a store that failed, an entry that ended, a kick) without a
// rebuild.
package logging

import (
	"fmt"
	"io"
	"log/slog"
)

// New returns a text logger writing to w at level: debug, info, warn or
// error (any case).
func New(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
