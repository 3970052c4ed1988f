package server

import (
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/dsd/storage"
)

func TestOptionsDefaultsAndValidate(t *testing.T) {
	var o Options
	o.EnsureDefaults()
	if o.Logger == nil || o.DefaultRole != RoleService || o.MaxConcurrentStreams != DefaultMaxConcurrentStreams ||
		o.KeepaliveMinTime != DefaultKeepaliveMinTime || o.KeepaliveTime != DefaultKeepaliveTime || o.KeepaliveTimeout != DefaultKeepaliveTimeout ||
		o.GatewayLink.BatchSize != DefaultLinkBatchSize || o.MaxRecvMsgSize != 0 {
		t.Errorf("defaults: %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
	o = Options{MaxRecvMsgSize: -1, KeepaliveTime: -time.Second, GatewayLink: GatewayLinkOptions{MaxEntries: -1}}
	o.EnsureDefaults()
	err := o.Validate()
	for _, field := range []string{"MaxRecvMsgSize", "KeepaliveTime", "MaxEntries"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("Validate: %v, want an error naming %s", err, field)
		}
	}
}

func TestGatewayLinkOptionsDefaultsAndValidate(t *testing.T) {
	var o GatewayLinkOptions
	o.EnsureDefaults()
	if o.BatchSize != DefaultLinkBatchSize || o.MaxBatchBytes != DefaultLinkMaxBatchBytes || o.IdlePollInterval != DefaultLinkIdlePoll ||
		o.RenewStreamsInterval != DefaultLinkRenewStreams || o.HeartbeatInterval != DefaultHeartbeatInterval ||
		o.MaxEntries != DefaultLinkMaxEntries || o.Now == nil {
		t.Errorf("defaults: %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
	for _, tc := range []struct {
		o     GatewayLinkOptions
		field string
	}{
		{GatewayLinkOptions{BatchSize: -1}, "BatchSize"},
		{GatewayLinkOptions{BatchSize: linkMaxBatchMessagesCap + 1}, "BatchSize"},
		{GatewayLinkOptions{MaxBatchBytes: linkMaxBatchBytesCap + 1}, "MaxBatchBytes"},
		{GatewayLinkOptions{IdlePollInterval: -time.Second}, "IdlePollInterval"},
		{GatewayLinkOptions{RenewStreamsInterval: -time.Second}, "RenewStreamsInterval"},
		{GatewayLinkOptions{HeartbeatInterval: -time.Second}, "HeartbeatInterval"},
		{GatewayLinkOptions{MaxEntries: -1}, "MaxEntries"},
	} {
		tc.o.EnsureDefaults()
		if err := tc.o.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%+v: %v, want an error naming %s", tc.o, err, tc.field)
		}
	}
}

// TestListenResolvesMaxRecvMsgSize: unset, it is the storage's largest
// message plus the slack; set, it is kept.
func TestListenResolvesMaxRecvMsgSize(t *testing.T) {
	db, err := storage.Open(storage.Options{DataDir: t.TempDir(), NShards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got, want := (Options{}).maxRecvMsgSize(db), db.Options().MaxMessageBytes+recvSlackBytes; got != want {
		t.Errorf("default MaxRecvMsgSize %d, want %d", got, want)
	}
	if got := (Options{MaxRecvMsgSize: 1234}).maxRecvMsgSize(db); got != 1234 {
		t.Errorf("MaxRecvMsgSize 1234 became %d", got)
	}
}
