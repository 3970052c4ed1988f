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

// Event kinds. Invoke, Ack, Fail and Deliver are the ones the verdicts rest
// on; the others add what a load tool saw around them.
const (
	// Invoke: a publish was attempted (QoS and Retain as sent).
	Invoke Kind = "invoke"
	// Ack: the system confirmed the publish as durable.
	Ack Kind = "ack"
	// Fail: the system refused the publish (it must not be delivered... but
	// may be, if the refusal was ambiguous; a definite refusal is Fail).
	Fail Kind = "fail"
	// Unknown: the publish ended without an answer (connection lost,
	// timeout); Err says why. Like no outcome at all, the message may or
	// may not be delivered.
	Unknown Kind = "unknown"
	// Deliver: a reader's application received the message (QoS, Dup and
	// Retain as received).
	Deliver Kind = "deliver"
	// Suppress: a reader received a QoS 2 PUBLISH again while its packet
	// identifier was held, and did not deliver it (MQTT method B). Counted
	// only: suppression is the receiver doing its job.
	Suppress Kind = "suppress"
	// Subscribe: a reader is about to send SUBSCRIBE for the topic filter
	// in Topic with maximum QoS in QoS. Recorded before the SUBSCRIBE goes
	// out, so no delivery for it can come first.
	Subscribe Kind = "subscribe"
	// Connack: a client (Reader or Publisher) connected; Clean is the clean
	// start it asked for and SessionPresent what CONNACK said.
	Connack Kind = "connack"
	// Disconnect: a client's connection ended; Err says why.
	Disconnect Kind = "disconnect"
	// Violation: a reader saw the server break the protocol (Err says
	// how). Any violation fails the check.
	Violation Kind = "violation"
	// Fault: a fault the test injected itself (a subscriber taken offline,
	// a server killed), for the record.
	Fault Kind = "fault"
)

// Event is one line of a history. Events must be recorded in the order they
// happened: the subscription and retained verdicts compare positions.
type Event struct {
	Kind      Kind   `json:"kind"`
	Publisher string `json:"publisher"`
	Topic     string `json:"topic"`
	Seq       uint64 `json:"seq"`
	// Reader names the subscriber or reader of a Deliver event.
	Reader string `json:"reader,omitempty"`
	// TimeUs is when the event was recorded (informational).
	TimeUs int64 `json:"time_us,omitempty"`
	// QoS is the QoS of an Invoke as published, of a Deliver as received,
	// and the maximum QoS of a Subscribe.
	QoS int `json:"qos,omitempty"`
	// Dup is the DUP flag of a Deliver or Suppress.
	Dup bool `json:"dup,omitempty"`
	// Retain is the RETAIN flag of an Invoke, or of a Deliver (a retained
	// message sent because of a subscription).
	Retain bool `json:"retain,omitempty"`
	// Clean and SessionPresent describe a Connack.
	Clean          bool `json:"clean,omitempty"`
	SessionPresent bool `json:"session_present,omitempty"`
	// Err explains a Fail, Unknown, Disconnect, Violation or Fault.
	Err string `json:"error,omitempty"`
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
