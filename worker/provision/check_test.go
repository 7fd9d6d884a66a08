package provision_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/provision"
)

// Item 10: the provisioned ack wait lets another replica take over in
// time; the figure with two processes is in worker/resilience.
func TestProvisionedAckWait(t *testing.T) {
	if got := provision.ConsumerConfig(worker.Config{}.Provisioning()).AckWait; got != 10*time.Second {
		t.Errorf("ack wait %v, want 10s", got)
	}
}

// The untrusted stream is provisioned as UntrustedStreamConfig says, and
// every setting of it that breaks a guarantee is refused by name.
func TestUntrustedStreamSettings(t *testing.T) {
	js := startJS(t)
	cfg := worker.Config{Provision: true}.Provisioning()
	ctx := context.Background()
	if err := provision.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, provision.UntrustedStream)
	if err != nil {
		t.Fatal(err)
	}
	want := provision.UntrustedStreamConfig(cfg)
	got := s.CachedInfo().Config
	if got.Name != want.Name || !reflect.DeepEqual(got.Subjects, []string{"keys.revoke.untrusted.>"}) ||
		got.Retention != jetstream.LimitsPolicy || got.MaxAge != 7*24*time.Hour || got.MaxBytes != 256<<20 ||
		got.Discard != jetstream.DiscardOld || !got.AllowDirect {
		t.Errorf("provisioned %+v, want %+v", got, want)
	}
	if err := provision.Check(ctx, js, cfg); err != nil {
		t.Fatalf("as provisioned: %v", err)
	}

	bad := want
	bad.Discard = jetstream.DiscardNew
	bad.Duplicates = time.Minute
	bad.MaxMsgSize = 1 << 10
	if _, err := js.UpdateStream(ctx, bad); err != nil {
		t.Fatal(err)
	}
	err = provision.Check(ctx, js, cfg)
	for _, w := range []string{"discards new messages", "duplicates window of 1m0s", "refuses messages over 1024 bytes"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("provision.Check: %v; want it to name %q", err, w)
		}
	}

	if err := js.DeleteStream(ctx, provision.UntrustedStream); err != nil {
		t.Fatal(err)
	}
	narrow := want
	narrow.Subjects = []string{"keys.revoke.untrusted.invalid_request"}
	if _, err := js.CreateStream(ctx, narrow); err != nil {
		t.Fatal(err)
	}
	if err := provision.Check(ctx, js, cfg); err == nil || !strings.Contains(err.Error(), "it must take keys.revoke.untrusted.>") {
		t.Errorf("provision.Check with one code's subject: %v", err)
	}

	if err := js.DeleteStream(ctx, provision.UntrustedStream); err != nil {
		t.Fatal(err)
	}
	cfg.Provision = false
	if err := provision.Check(ctx, js, cfg); err == nil || !strings.Contains(err.Error(), "stream "+provision.UntrustedStream) {
		t.Errorf("provision.Check without the stream: %v", err)
	}
}
