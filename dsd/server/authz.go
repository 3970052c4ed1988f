package server

import (
	"fmt"

	"github.com/stratamq/strata/dsd/storage"
	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
)

// methodRule is one row of the method table: who may call a method, and
// what else is checked for the caller.
type methodRule struct {
	// roles may call the method; no other role may.
	roles []Role
	// check, when set, refines the decision per request: for a unary call
	// it sees the request, for a stream its first request.
	check func(a *authorizer, c caller, req any) error
	// filter, when set, removes from a unary call's response what the
	// caller may not read.
	filter func(c caller, resp any)
}

// Role sets of the table.
var (
	anyRole      = []Role{RoleGateway, RoleService, RoleAdmin}
	gatewayAdmin = []Role{RoleGateway, RoleAdmin}
	serviceAdmin = []Role{RoleService, RoleAdmin}
	adminOnly    = []Role{RoleAdmin}
	siteAdmin    = []Role{RoleSite, RoleAdmin}
)

// methodRules is dsd's authorization table, deny by default: a method
// that is not here is refused for every caller, and TestMethodTableCoversAPI
// fails when a registered method has no row. A new RPC gets its roles by
// adding a row. docs/api.md "Security" prints the table.
//
// Without client certificates (a loopback listener, or
// unsafe_plaintext_listen) every caller is admin.
var methodRules = map[string]methodRule{
	dsdv1.StorageService_Store_FullMethodName: {roles: anyRole},
	// The gateways' publish path; a Store for a client with a session must
	// name its guard (the producer epoch), as on Store.
	dsdv1.StorageService_Ingest_FullMethodName:       {roles: gatewayAdmin},
	dsdv1.StorageService_GetStreams_FullMethodName:   {roles: anyRole},
	dsdv1.StorageService_MakeIterator_FullMethodName: {roles: anyRole},
	dsdv1.StorageService_Next_FullMethodName:         {roles: anyRole},
	dsdv1.StorageService_Watermarks_FullMethodName:   {roles: anyRole},
	dsdv1.StorageService_Info_FullMethodName:         {roles: anyRole},

	dsdv1.AdminService_ListGenerations_FullMethodName:  {roles: serviceAdmin},
	dsdv1.AdminService_LearnedStructure_FullMethodName: {roles: serviceAdmin},
	dsdv1.AdminService_ListSharedGroups_FullMethodName: {roles: serviceAdmin},
	dsdv1.AdminService_AddGeneration_FullMethodName:    {roles: adminOnly},
	dsdv1.AdminService_DropGeneration_FullMethodName:   {roles: adminOnly},
	dsdv1.AdminService_UpdateReplicas_FullMethodName:   {roles: adminOnly},

	dsdv1.RetainedService_MatchRetained_FullMethodName:  {roles: anyRole},
	dsdv1.RetainedService_GetRetained_FullMethodName:    {roles: anyRole},
	dsdv1.RetainedService_DeleteRetained_FullMethodName: {roles: adminOnly},

	// A gateway's hello must name one of its certificate's names.
	dsdv1.GatewayLinkService_GatewayLink_FullMethodName: {roles: gatewayAdmin, check: checkHello},

	// A gateway opens sessions only as itself, and changes only the
	// sessions it opened last; an unguarded delete is an operator's.
	dsdv1.SessionService_OpenSession_FullMethodName:   {roles: gatewayAdmin, check: checkOpenSession},
	dsdv1.SessionService_CommitSession_FullMethodName: {roles: gatewayAdmin, check: checkOwnSession},
	dsdv1.SessionService_Disconnect_FullMethodName:    {roles: gatewayAdmin, check: checkOwnSession},
	dsdv1.SessionService_Release_FullMethodName:       {roles: gatewayAdmin, check: checkOwnSession},
	dsdv1.SessionService_DeleteSession_FullMethodName: {roles: gatewayAdmin, check: checkDeleteSession},
	// Guards are capabilities: only an admin, or the gateway that owns the
	// session, reads them.
	dsdv1.SessionService_GetSession_FullMethodName:   {roles: anyRole, filter: redactSessionGuard},
	dsdv1.SessionService_ListSessions_FullMethodName: {roles: anyRole, filter: redactListedGuards},

	// Only other sites (and an admin) speak raft and join the cluster.
	dsdv1.SiteService_Link_FullMethodName:          {roles: siteAdmin},
	dsdv1.SiteService_Join_FullMethodName:          {roles: siteAdmin},
	dsdv1.SiteService_ShardSnapshot_FullMethodName: {roles: siteAdmin},
	dsdv1.SiteService_Shared_FullMethodName:        {roles: siteAdmin},
}

func checkHello(_ *authorizer, c caller, req any) error {
	hello := req.(*dsdv1.GatewayLinkRequest).GetHello()
	if hello == nil {
		return nil // not a hello: the handler refuses the stream
	}
	if !c.isGatewayID(hello.GetGatewayId()) {
		return fmt.Errorf("%w: %s may not register as gateway %q (the certificate's names: %q)", errPermissionDenied, c, hello.GetGatewayId(), c.names)
	}
	return nil
}

func checkOpenSession(_ *authorizer, c caller, req any) error {
	id := req.(*dsdv1.OpenSessionRequest).GetGatewayId()
	if !c.isGatewayID(id) {
		return fmt.Errorf("%w: %s may not open sessions for gateway %q", errPermissionDenied, c, id)
	}
	return nil
}

// sessionCall is a guarded session request.
type sessionCall interface{ GetClientId() string }

func checkOwnSession(a *authorizer, c caller, req any) error {
	var cid string
	switch r := req.(type) {
	case *dsdv1.CommitSessionRequest:
		cid = r.GetCommit().GetClientId()
	case sessionCall:
		cid = r.GetClientId()
	}
	return a.ownSession(c, cid)
}

func checkDeleteSession(a *authorizer, c caller, req any) error {
	r := req.(*dsdv1.DeleteSessionRequest)
	if r.Guard == nil && c.role != RoleAdmin {
		return fmt.Errorf("%w: deleting session %q without a guard needs the admin role; %s", errPermissionDenied, r.GetClientId(), c)
	}
	return a.ownSession(c, r.GetClientId())
}

// ownSession refuses a gateway's call on a session another gateway opened
// last, as a stale guard would be ("not mine", ABORTED): the guard is the
// capability, and a gateway must not use one it did not get. A missing
// session is left to the handler (NOT_FOUND).
func (a *authorizer) ownSession(c caller, clientID string) error {
	if c.role == RoleAdmin {
		return nil
	}
	owner, _, ok := a.db.SessionOwner(clientID)
	if !ok || c.isGatewayID(owner) {
		return nil
	}
	return fmt.Errorf("%w: session %q is owned by another gateway, not %s", storage.ErrStaleGuard, clientID, c)
}

func redactSessionGuard(c caller, resp any) {
	rec := resp.(*dsdv1.GetSessionResponse).GetSession().GetRecord()
	if rec != nil && !c.isGatewayID(rec.GetOwnerGatewayId()) {
		rec.Guard = 0
	}
}

func redactListedGuards(c caller, resp any) {
	if c.role == RoleAdmin {
		return
	}
	for _, s := range resp.(*dsdv1.ListSessionsResponse).GetSessions() {
		if rec := s.GetRecord(); rec != nil {
			rec.Guard = 0
		}
	}
}
