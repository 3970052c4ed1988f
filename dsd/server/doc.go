// Package server is dsd's network face: the gRPC API (strata.dsd.v1) over the
// storage engine — StorageService, AdminService, SessionService (MQTT
// sessions under guards, docs/sessions.md) and the GatewayLink stream that
// pushes new streams, new messages and session kicks to gateways — and the HTTP
// endpoints (/healthz, /readyz, /metrics and the REST API under /ds and
// /api/v5/ds). Callers are authorized by role (authorizer) when mTLS is on.
//
// It holds no storage logic. Requests are checked for shape here, the work is
// done by dsd/storage, and every storage error becomes a gRPC status in exactly
// one function, statusFor, backed by one table, so callers (the gateway, dstool,
// other services) see stable codes: InvalidArgument for bad input,
// FailedPrecondition for a refused producer sequence or epoch, Aborted for a
// stale session guard, PermissionDenied for another username's session,
// NotFound for a dropped generation or an absent session, Unavailable while dsd is closing or has stopped writing
// after an I/O error, DataLoss for corruption.
package server
