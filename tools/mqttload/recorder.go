package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/stratamq/strata/internal/checker"
)

// recorder writes the history as it happens: to --history as JSON lines
// (streamed, so a run that is killed still leaves its history), and to
// memory for --check. A nil recorder records nothing.
type recorder struct {
	mu struct {
		sync.Mutex
		f   *os.File
		w   *bufio.Writer
		enc *json.Encoder
		err error
	}
	mem *checker.History
}

func newRecorder(path string, keep bool) (*recorder, error) {
	if path == "" && !keep {
		return nil, nil
	}
	r := &recorder{}
	if keep {
		r.mem = &checker.History{}
	}
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			return nil, fmt.Errorf("mqttload: history: %w", err)
		}
		r.mu.f = f
		r.mu.w = bufio.NewWriterSize(f, 256<<10)
		r.mu.enc = json.NewEncoder(r.mu.w)
	}
	return r, nil
}

// add records e, stamped with the current time. The lock also orders the
// events: the checker compares positions.
func (r *recorder) add(e checker.Event) {
	if r == nil {
		return
	}
	e.TimeUs = time.Now().UnixMicro()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mem != nil {
		r.mem.Add(e)
	}
	if r.mu.enc != nil && r.mu.err == nil {
		r.mu.err = r.mu.enc.Encode(e)
	}
}

// events returns the in-memory history (nil without --check).
func (r *recorder) events() []checker.Event {
	if r == nil || r.mem == nil {
		return nil
	}
	return r.mem.Events()
}

// close flushes and closes the history file.
func (r *recorder) close() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.f == nil {
		return r.mu.err
	}
	err := r.mu.err
	if ferr := r.mu.w.Flush(); err == nil {
		err = ferr
	}
	if cerr := r.mu.f.Close(); err == nil {
		err = cerr
	}
	r.mu.f = nil
	if err != nil {
		return fmt.Errorf("mqttload: history: %w", err)
	}
	return nil
}
