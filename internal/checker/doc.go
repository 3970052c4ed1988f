// Package checker decides, from a recorded history, whether a run kept
// Strata's promises: every acknowledged message delivered (lost = 0), nothing
// delivered that was never published (unexpected = 0), no message delivered
// twice where that is forbidden, per (publisher, topic) order, the right
// retained values, and sessions that survive reconnects.
//
// A history is a sequence of events, recorded as JSON lines by load tools and
// tests: a publish is invoked, then acked or failed (or neither, when the
// process died: its outcome is unknown, and it may or may not be delivered);
// a reader reports each delivery. Messages are identified by (publisher,
// sequence number), which a publisher assigns in order per topic and writes
// into the payload so a reader can report it without trusting the broker.
//
// The verdicts:
//
//   - Lost: acked and not delivered to a reader that must have it. Without
//     Subscribe events every reader must have every acked message; with
//     them, only what its subscriptions covered (see Subscribe and
//     Connack). Each loss is classed lost-prefix, lost-middle or
//     lost-postfix by where it sits among what the reader received from the
//     same publisher (lost-all when it received nothing), and counted per
//     publisher.
//   - Duplicates: a message delivered twice to one reader. At QoS 1 that is
//     a redelivery, allowed and counted; at QoS 2 it is never allowed;
//     without a QoS (older histories) Options.AllowDuplicates decides.
//   - Order: per (reader, publisher, topic), first deliveries in sequence.
//   - Retained: a subscriber that subscribes after a retained publish was
//     acked must get a retained value for the topic, and the value must be
//     one the topic can hold then (see retainedLog for the model).
//   - Sessions: a reader that reconnects without clean start must find its
//     session (Session Present 1).
//   - Violations: protocol violations a recording reader (internal/mqttrec)
//     saw fail the check.
//
// The checker is deliberately independent of the code it checks: it knows no
// storage or MQTT internals. Its self-test in integration/ proves it reports
// loss against a deliberately unsafe configuration (dsd's unsafe_no_sync).
package checker
