package checker

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sync"
)

// Kind names an event.
type Kind string

// Event kinds.
const (
	// Invoke: a publish was attempted.
	Invoke Kind = "invoke"
	// Ack: the system confirmed the publish as durable.
	Ack Kind = "ack"
	// Fail: the system refused the publish (it must not be delivered... but
	// may be, if the refusal was ambiguous; a definite refusal is Fail).
	Fail Kind = "fail"
	// Deliver: a reader received the message.
	Deliver Kind = "deliver"
)

// Event is one line of a history.
type Event struct {
	Kind      Kind   `json:"kind"`
	Publisher string `json:"publisher"`
	Topic     string `json:"topic"`
	Seq       uint64 `json:"seq"`
	// Reader names the subscriber or reader of a Deliver event.
	Reader string `json:"reader,omitempty"`
	// TimeUs is when the event was recorded (informational).
	TimeUs int64 `json:"time_us,omitempty"`
}

// ID identifies a message.
type ID struct {
	Publisher string
	Seq       uint64
}

func (id ID) String() string { return fmt.Sprintf("%s#%d", id.Publisher, id.Seq) }

// History is an append-only, concurrency-safe event log.
type History struct {
	mu struct {
		sync.Mutex
		events []Event
	}
}

// Add records an event.
func (h *History) Add(e Event) {
	h.mu.Lock()
	h.mu.events = append(h.mu.events, e)
	h.mu.Unlock()
}

// Events returns a copy of the events so far.
func (h *History) Events() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Event(nil), h.mu.events...)
}

// WriteJSONLines writes the history, one JSON object per line.
func (h *History) WriteJSONLines(w io.Writer) error {
	enc := json.NewEncoder(w)
	for _, e := range h.Events() {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return nil
}

// ReadJSONLines parses a history written by WriteJSONLines.
func ReadJSONLines(r io.Reader) ([]Event, error) {
	var out []Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("checker: history line %d: %w", line, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}
