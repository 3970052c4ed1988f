package server

import (
	"context"
	"fmt"
	"testing"

	"github.com/stratamq/strata/gateway/auth"
	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/gateway/session"
)

// The session backend's errors become CONNACK codes in connectRefusal
// (MQTT 5) and the machine's 3.1.1 mapping.
func TestConnectRefusalSessionErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		v5   packet.ReasonCode
		v311 byte
	}{
		{fmt.Errorf("dsd: %w", session.ErrIdentityMismatch), packet.NotAuthorized, packet.ConnectRefusedNotAuthorized},
		{fmt.Errorf("dsd: %w", session.ErrUnavailable), packet.ServerUnavailable, packet.ConnectRefusedServerUnavailable},
		{context.DeadlineExceeded, packet.ServerUnavailable, packet.ConnectRefusedServerUnavailable},
		{fmt.Errorf("dsd: %w: dsd: disk full", session.ErrQuotaExceeded), packet.QuotaExceeded, packet.ConnectRefusedServerUnavailable},
		{fmt.Errorf("x: %w", auth.ErrTooManyFailures), packet.Banned, packet.ConnectRefusedNotAuthorized},
	} {
		code, noConnack := connectRefusal(tc.err, packet.V5)
		if code != tc.v5 || noConnack {
			t.Errorf("%v: MQTT 5 0x%02X (no CONNACK %v), want 0x%02X", tc.err, byte(code), noConnack, byte(tc.v5))
		}
		if got, ok := packet.V3ConnectReturnCode(code); !ok || got != tc.v311 {
			t.Errorf("%v: 3.1.1 0x%02X, want 0x%02X", tc.err, got, tc.v311)
		}
	}
}
