// Package checker decides, from a recorded history, whether a run kept
// Strata's promises: every acknowledged message delivered (lost = 0), nothing
// delivered that was never published (unexpected = 0), no message delivered
// twice where that is forbidden, and per (publisher, topic) order.
//
// A history is a sequence of events, recorded as JSON lines by load tools and
// tests: a publish is invoked, then acked or failed (or neither, when the
// process died: its outcome is unknown, and it may or may not be delivered);
// a reader reports each delivery. Messages are identified by (publisher,
// sequence number), which a publisher assigns in order per topic and writes
// into the payload so a reader can report it without trusting the broker.
//
// The checker is deliberately independent of the code it checks: it knows no
// storage or MQTT internals. Its self-test in integration/ proves it reports
// loss against a deliberately unsafe configuration (dsd's unsafe_no_sync).
package checker
