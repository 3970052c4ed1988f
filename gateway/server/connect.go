package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stratamq/strata/gateway/auth"
	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/gateway/session"
)

// openSession carries out a machine's Connect action: admission (the zone's
// connection rate), authentication, then the session backend. It runs in the
// connection's read goroutine without locks held.
func (s *Server) openSession(c *conn, req session.ConnectRequest) session.ConnectResult {
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.BackendTimeout)
	defer cancel()
	refuse := func(err error) session.ConnectResult {
		code, noConnack := connectRefusal(err, req.Version)
		s.metrics.connectRefused.WithLabelValues(fmt.Sprintf("0x%02X", byte(code))).Inc()
		c.log.Debug("CONNECT refused", "client_id", req.ClientID, "username", req.Username, "code", fmt.Sprintf("0x%02X", byte(code)), "err", err)
		return session.ConnectResult{Code: code, NoConnack: noConnack}
	}
	if a := s.opts.Admission; a != nil {
		if err := a.Admit(c.l.zone); err != nil {
			return refuse(err)
		}
	}
	id := auth.Identity{Username: req.Username}
	if a := s.opts.Authenticator; a != nil {
		var err error
		id, err = a.Authenticate(ctx, c.l.loopback, req.Username, req.Password, req.PasswordFlag)
		if err != nil {
			if errors.Is(err, auth.ErrBadUserNameOrPassword) || errors.Is(err, auth.ErrNotAuthorized) {
				s.metrics.authFailures.Inc()
			}
			return refuse(err)
		}
	}
	opened, err := s.opts.Backend.Open(ctx, session.OpenRequest{
		ClientID:   req.ClientID,
		Username:   id.Username,
		Version:    req.Version,
		CleanStart: req.CleanStart,
		Expiry:     req.Expiry,
		Will:       req.Will,
		Now:        time.Now(),
	})
	if err != nil {
		return refuse(err)
	}
	res := session.ConnectResult{Code: packet.Success, SessionPresent: opened.SessionPresent, Guard: opened.Guard, Session: opened.Session}
	if acl := s.opts.ACL; acl != nil && acl.Len() > 0 {
		clientID := req.ClientID
		res.Authorize = func(a session.Access, topic string) bool {
			action := auth.Publish
			if a == session.AccessSubscribe {
				action = auth.Subscribe
			}
			return acl.Authorize(id, clientID, action, topic)
		}
	}
	return res
}

// connectRefusal is the one place where the errors of admission,
// authentication and the session backend become a CONNACK (STYLE.md rule 8):
// the MQTT 5 reason code, and whether to close without a CONNACK instead.
// The machine maps the code to a 3.1.1 return code.
func connectRefusal(err error, v packet.Version) (code packet.ReasonCode, noConnack bool) {
	switch {
	case errors.Is(err, auth.ErrBadUserNameOrPassword), errors.Is(err, auth.ErrNotAuthorized),
		errors.Is(err, auth.ErrConnectionRateExceeded):
		_, send := auth.ConnackCode(err, v)
		return auth.ReasonCode(err), !send
	case errors.Is(err, session.ErrIdentityMismatch):
		return packet.NotAuthorized, false
	case errors.Is(err, session.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return packet.ServerUnavailable, false
	case errors.Is(err, session.ErrQuotaExceeded):
		// dsd refuses writes (its disk is full): 0x97, 0x03 in 3.1.1.
		return packet.QuotaExceeded, false
	case errors.Is(err, context.Canceled):
		// The gateway is closing: no one is waiting for an answer.
		return packet.ServerShuttingDown, true
	}
	return packet.UnspecifiedError, false
}
