package server

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dsdv1 "github.com/stratamq/strata/gen/strata/dsd/v1"
	storagev1 "github.com/stratamq/strata/gen/strata/storage/v1"
	"github.com/stratamq/strata/internal/testutil/testpki"
)

func TestRetainedService(t *testing.T) {
	c, _ := startServer(t)
	ctx := context.Background()
	var msgs []*storagev1.Message
	for i := 0; i < 25; i++ {
		m := msg(fmt.Sprintf("r/%02d", i), fmt.Sprintf("v%d", i))
		m.Retain = true
		msgs = append(msgs, m)
	}
	sys := msg("$SYS/r", "sys")
	sys.Retain = true
	msgs = append(msgs, sys)
	if _, err := c.Storage.Store(ctx, &dsdv1.StoreRequest{ClientId: "p", Messages: msgs}); err != nil {
		t.Fatal(err)
	}
	var topics []string
	pages := 0
	token := ""
	for {
		res, err := c.Retained().MatchRetained(ctx, &dsdv1.MatchRetainedRequest{TopicFilter: "#", PageToken: token, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, m := range res.GetMessages() {
			topics = append(topics, m.GetTopic())
		}
		if token = res.GetNextPageToken(); token == "" {
			break
		}
	}
	if len(topics) != 25 || topics[0] != "r/00" || topics[24] != "r/24" || pages != 3 {
		t.Fatalf("match #: %d topics in %d pages: %v", len(topics), pages, topics)
	}
	n := 0
	if err := c.MatchRetained(ctx, "$SYS/+", 0, func(m *storagev1.Message) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("match $SYS/+: %d, %v", n, err)
	}
	got, err := c.Retained().GetRetained(ctx, &dsdv1.GetRetainedRequest{Topic: "r/07"})
	if err != nil || string(got.GetMessage().GetPayload()) != "v7" || got.GetMessage().GetPublisherClientId() != "p" {
		t.Fatalf("get r/07: %v, %v", got, err)
	}
	del, err := c.Retained().DeleteRetained(ctx, &dsdv1.DeleteRetainedRequest{Topic: "r/07"})
	if err != nil || !del.GetDeleted() {
		t.Fatalf("delete r/07: %v, %v", del, err)
	}
	if got, err := c.Retained().GetRetained(ctx, &dsdv1.GetRetainedRequest{Topic: "r/07"}); err != nil || got.GetMessage() != nil {
		t.Fatalf("get r/07 after delete: %v, %v", got, err)
	}
	for _, bad := range []error{
		func() error {
			_, err := c.Retained().MatchRetained(ctx, &dsdv1.MatchRetainedRequest{TopicFilter: "a/#/b"})
			return err
		}(),
		func() error {
			_, err := c.Retained().MatchRetained(ctx, &dsdv1.MatchRetainedRequest{TopicFilter: "#", Limit: 1 << 20})
			return err
		}(),
		func() error {
			_, err := c.Retained().GetRetained(ctx, &dsdv1.GetRetainedRequest{Topic: "a/+"})
			return err
		}(),
		func() error {
			_, err := c.Retained().DeleteRetained(ctx, &dsdv1.DeleteRetainedRequest{Topic: ""})
			return err
		}(),
	} {
		if status.Code(bad) != codes.InvalidArgument {
			t.Errorf("bad request: %v; want InvalidArgument", bad)
		}
	}
}

func TestDeleteRetainedNeedsAdmin(t *testing.T) {
	pki := testpki.New(t)
	srv := startTLSServer(t, pki, true)
	ctx := context.Background()
	gw := dialAs(t, pki, srv, "gw-1")
	if _, err := gw.Retained().DeleteRetained(ctx, &dsdv1.DeleteRetainedRequest{Topic: "a"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("gateway deleting a retained message: %v; want PermissionDenied", err)
	}
	if _, err := gw.Retained().MatchRetained(ctx, &dsdv1.MatchRetainedRequest{TopicFilter: "#"}); err != nil {
		t.Errorf("gateway matching retained messages: %v", err)
	}
	if _, err := dialAs(t, pki, srv, "ops").Retained().DeleteRetained(ctx, &dsdv1.DeleteRetainedRequest{Topic: "a"}); err != nil {
		t.Errorf("admin deleting a retained message: %v", err)
	}
}
