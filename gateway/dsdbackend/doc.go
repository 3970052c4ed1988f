// Package dsdbackend keeps the gateway's sessions in dsd: a session.Backend
// over SessionService (Backend), and the gateway's registration with dsd
// (Lease): one GatewayLink stream per epoch, which carries dsd's session
// kicks to the connections they name and keeps the gateway's lease.
//
// The rules (ARCHITECTURE.md section 6, docs/gateway.md "Sessions in dsd"):
//
//   - Every CONNECT opens its session in dsd under the gateway's current
//     (gateway id, epoch). Without a registered epoch with a live link the
//     gateway cannot be told about takeovers, so it refuses CONNECTs with
//     ErrUnavailable (CONNACK 0x88 / 0x03) instead of opening.
//   - A SessionKick{client id, guard} closes the one connection holding that
//     guard (Server.Kick: MQTT 5 DISCONNECT 0x8E).
//   - The lease lasts from the last acknowledged heartbeat; when it is not
//     renewed within two heartbeat intervals the gateway closes all its
//     MQTT connections (Server.LeaseLost) and registers a new epoch once
//     dsd answers again.
//
// The gateway reaches dsd only through the generated API and dsd/client.
// gRPC status becomes a session error in one function, sessionError.
package dsdbackend
