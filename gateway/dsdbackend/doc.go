// Package dsdbackend keeps the gateway's sessions in dsd. Its parts:
//
//   - Pool: the connections to dsd's sites and the shard → leader table
//     (Table), learnt from the sites' Info and from their refusals
//     (ParseRefusal); with one dsd, one site that leads every shard;
//   - Backend: a session.Backend over SessionService (OpenSession,
//     Disconnect), each call to the leader of the session's shard;
//   - Storage: a session.Storage whose Stores travel on the gateway's
//     ingest streams, one per site (Ingest), each Store to its shard's
//     leader, and whose Releases are SessionService calls;
//   - Delivery: session commits, watermarks, replays and retained messages
//     for the outbound side;
//   - Lease: the gateway's registration with dsd: one epoch, one
//     GatewayLink stream per site, which carry dsd's session kicks and
//     keep the lease;
//   - Router: the Watch and Read entries of the gateway's connections,
//     multiplexed over the Lease's links, each to its shard's leader.
//
// docs/replication.md "Gateways across sites" describes the routing.
//
// The rules (ARCHITECTURE.md section 6, docs/gateway.md "Sessions in dsd"):
//
//   - Every CONNECT opens its session in dsd under the gateway's current
//     (gateway id, epoch). Without a registered epoch with a live link the
//     gateway cannot be told about takeovers, so it refuses CONNECTs with
//     session.ErrUnavailable (CONNACK 0x88 / 0x03) instead of opening.
//   - A SessionKick{client id, guard} closes the one connection holding that
//     guard (Handlers.Kick; the gateway wires it to gateway/server's
//     Server.Kick: MQTT 5 DISCONNECT 0x8E).
//   - The lease lasts from the last acknowledged heartbeat; when it is not
//     renewed within two heartbeat intervals the gateway closes all its
//     MQTT connections (Handlers.Lost: gateway/server's Server.LeaseLost)
//     and registers a new epoch once dsd answers again.
//
// The gateway reaches dsd only through the generated API and dsd/client.
// gRPC status becomes a session error in one function, sessionError.
package dsdbackend
