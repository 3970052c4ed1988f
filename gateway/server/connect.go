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

// openSession carries out a machine's Connect action: authentication, then
// the session backend. It runs in the
// connection's read goroutine without locks held.
func (s *Server) openSession(c *conn, req session.ConnectRequest) session.ConnectResult {
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.BackendTimeout)
	defer cancel()
	refuse := func(err error) session.ConnectResult {
		code, noConnack := connectRefusal(err, req.Version)
		s.metrics.connectRefused.WithLabelValues(fmt.Sprintf("0x%02X", byte(code))).Inc()
		c.debug("CONNECT refused", "client_id", req.ClientID, "username", req.Username, "code", fmt.Sprintf("0x%02X", byte(code)), "err", err)
		return session.ConnectResult{Code: code, NoConnack: noConnack}
	}
	// Admission (mqtt.max_conn_rate) took its token at accept (admit.go).
	id := auth.Identity{Username: req.Username}
	if field := c.l.certIdentity; field != "" {
		// use_identity_as_username: the verified certificate is the
		// credential; the CONNECT's username and password are not used.
		name, err := auth.CertUsername(c.tlsState(), field)
		if err != nil {
			s.metrics.authFailures.Inc()
			return refuse(err)
		}
		id = auth.Identity{Username: name, Authenticated: true}
	} else if a := s.opts.Authenticator; a != nil {
		var err error
		// "loopback" is judged from the client's address, not from the
		// listener's bind address (a local proxy makes every client look
		// local to a loopback listener; PROXY headers name the real one).
		id, err = a.Check(ctx, auth.Request{
			Anonymous: c.l.anonymous, Loopback: c.peer.IsLoopback(), Addr: c.remoteAddr(), ClientID: req.ClientID,
			Username: req.Username, Password: req.Password, HasPassword: req.PasswordFlag,
		})
		if err != nil {
			if errors.Is(err, auth.ErrBadUserNameOrPassword) || errors.Is(err, auth.ErrNotAuthorized) || errors.Is(err, auth.ErrTooManyFailures) {
				s.metrics.authFailures.Inc()
			}
			return refuse(err)
		}
	}
	acl := s.opts.ACL
	if w := req.Will; w != nil && !acl.Authorize(id, req.ClientID, auth.Publish, w.Topic) {
		// The will is a PUBLISH the client arms now: checked before the
		// session (and with it the will) is opened.
		s.metrics.aclDenied.WithLabelValues("will").Inc()
		return refuse(fmt.Errorf("%w: will topic %q", auth.ErrNotAuthorized, w.Topic))
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
	res := session.ConnectResult{Code: packet.Success, SessionPresent: opened.SessionPresent, Guard: opened.Guard, Session: opened.Session, Watermarks: opened.Watermarks}
	if id.Token != nil {
		res.AuthExpires = id.Token.Expires
	}
	if acl.Len() > 0 {
		clientID := req.ClientID
		res.Authorize = func(a session.Access, topic string) bool {
			switch a {
			case session.AccessSubscribe:
				return acl.Authorize(id, clientID, auth.Subscribe, topic)
			case session.AccessSubscribeWhole:
				_, whole := acl.AuthorizeFilter(id, clientID, topic)
				return whole
			case session.AccessDeliver:
				return acl.AuthorizeDelivery(id, clientID, topic)
			}
			return acl.Authorize(id, clientID, auth.Publish, topic)
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
		errors.Is(err, auth.ErrConnectionRateExceeded), errors.Is(err, auth.ErrTooManyFailures):
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
