// Package server is the gateway's network side: it binds the MQTT listeners
// (tcp, tls, ws, wss; listeners.<type>.<name> in the configuration, each
// belonging to a zone), drives one session.Machine per connection, and serves
// /metrics, /healthz and /readyz on gateway.http_listen.
//
// # Connections
//
// A connection's read loop reads one packet at a time (bounded by the
// zone's mqtt.max_packet_size before anything is allocated) and feeds it to
// the machine; an idle timer, armed only while the machine has a deadline,
// carries the connect timeout and the keep-alive. The read loop carries out
// the machine's Connect action itself (admission, authentication, session
// open), so the packets a client pipelines after CONNECT wait in the socket
// until CONNACK. A writer goroutine runs only while packets wait to be sent
// (conn_write.go): it drains a bounded queue of encoded packets, flushing
// when the queue is empty; a client that lets the queue fill is disconnected
// (slow consumer) instead of growing it. A Close action is queued behind the
// packets before it, so a refusing CONNACK or a DISCONNECT reaches the client
// before the socket closes.
//
// An idle plain TCP connection has no goroutine at all (conn_park.go): 100
// to 200 ms after its last packet the park loop makes its socket park in the
// server's epoll set (Linux, poller_linux.go), and readiness or an abort
// resumes it in a new goroutine.
// TLS, WebSocket and PROXY connections keep their read goroutine.
//
// Each goroutine that touches a connection recovers panics at its boundary
// (STYLE.md rule 9): the stack is logged, strata_gateway_panics_recovered_total
// counts it, and only that connection closes; its session is still ended.
//
// # Locks
//
// Server.mu guards the set of connections and the kick registry; conn.mu
// guards one machine. Neither is held while taking the other, nor across
// network or backend I/O: a kick looks the connection up under Server.mu,
// releases it, then takes conn.mu. sysTopics.mu (the latest $SYS values) is
// taken under conn.mu, when a machine asks for them, and never held while
// taking another lock. poller.mu (the parked connections) is a leaf: it is
// held only around its own map, and a connection is resumed (conn.parked)
// after it is released.
//
// # Sessions
//
// Sessions are opened and ended through a session.Backend: the gateway
// program uses dsd's SessionService (package dsdbackend), whose GatewayLink
// delivers takeover kicks to Server.Kick (the old connection gets DISCONNECT
// 0x8E) and whose lease loss calls Server.LeaseLost (every connection closes
// abnormally, MQTT 5 clients get DISCONNECT 0x89). Without a Backend the
// server keeps sessions in memory (session.MemBackend), for tests.
//
// # $SYS topics
//
// Every gateway.sys_interval the server reads its counters and hands them as
// session.LocalMessages to every connection's machine (sys.go), which sends
// them to matching subscriptions; they never reach dsd. The latest values
// are kept for new subscriptions (session.Config.LocalRetained).
//
// # Stopping
//
// Shutdown stops accepting, asks every connection to close (MQTT 5 clients
// get DISCONNECT 0x8B), and waits for them to end their sessions until its
// context ends; then it closes what is left. Close does the same at once.
package server
