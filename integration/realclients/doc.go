// Package realclients runs the MQTT clients that people use against Strata,
// each in its own runtime: MQTT.js in Node and in headless Chromium (over
// the gateway's WebSocket listener), Eclipse paho-mqtt in Python (MQTT 3.1.1
// and 5), mosquitto_pub and mosquitto_sub, and paho.golang.
//
// Every client runs the same rounds, and every verdict is reached here, in
// Go: a durable session resumed across a gateway restart (every message
// published while the client was away arrives, in order, once), and a
// shared subscription between two members (each receives a part, each
// message reaches one member).
//
// The scripts in testdata/ are agents: they read one JSON command a line
// (connect, subscribe, publish, disconnect, each for a named client slot)
// and write one JSON event a line (the answer to each command, and every
// message received). paho.golang runs in the test process and the
// mosquitto programs as child processes behind the same interface.
//
// STRATA_REALCLIENTS_BROKER=mosquitto runs the same tests against Debian's
// mosquitto instead of Strata: a check of the scripts themselves.
// docs/interop.md says what each client needs and how to run one by hand.
package realclients
