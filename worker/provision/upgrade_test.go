package provision_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

const ledgerStream = ledger.Stream

// previousLedgerConfig is the ledger bucket as the previous main
// provisioned it (and deploy/README.md's nats kv add made it): no
// per-entry TTLs.
func previousLedgerConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:       "REVOKER_LEDGER",
		Description:  "revoker: request decisions and revoked keys (ledger)",
		History:      1,
		TTL:          90 * 24 * time.Hour,
		MaxBytes:     1 << 30,
		MaxValueSize: 16 << 10,
		Storage:      jetstream.FileStorage,
		Replicas:     1,
	}
}

func startJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, natstest.Start(t).URL()))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// A ledger the previous main made is upgraded in place by Ensure: its
// entries and revisions stay, every setting but the two TTL ones stays
// (an operator's larger size included), and per-entry TTLs work. Until
// then Check refuses it with --no-provision and names the command that
// upgrades it; with provisioning it passes, since run upgrades it.
func TestLedgerUpgradeInPlace(t *testing.T) {
	js := startJS(t)
	ctx := context.Background()
	old := previousLedgerConfig()
	old.MaxBytes = 2 << 30 // tuned by an operator
	kv, err := js.CreateKeyValue(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	revs := map[string]uint64{}
	for _, k := range []string{"req.aW5jLTE", "key.k1", "leaked.00ff"} {
		rev, err := kv.Create(ctx, k, []byte(`{"k":"`+k+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		revs[k] = rev
	}
	before := streamConfig(t, js, ledgerStream)

	noProvision := worker.Config{Provision: false}.Provisioning()
	err = provision.Check(ctx, js, noProvision)
	if err == nil || !strings.Contains(err.Error(), "nats kv edit REVOKER_LEDGER --marker-ttl 1m,") {
		t.Errorf("Check of the old ledger with --no-provision: %v; want the upgrade command", err)
	}
	if err := provision.Check(ctx, js, worker.Config{Provision: true}.Provisioning()); err != nil && strings.Contains(err.Error(), "per-entry TTLs") {
		t.Errorf("Check with provisioning refuses what run upgrades: %v", err)
	}

	for range 2 { // a second run changes nothing
		if err := provision.Ensure(ctx, js, worker.Config{}.Provisioning()); err != nil {
			t.Fatal(err)
		}
	}
	after := streamConfig(t, js, ledgerStream)
	if !after.AllowMsgTTL || after.SubjectDeleteMarkerTTL != time.Minute {
		t.Errorf("after the upgrade: allow_msg_ttl %v, marker TTL %v", after.AllowMsgTTL, after.SubjectDeleteMarkerTTL)
	}
	after.AllowMsgTTL, after.SubjectDeleteMarkerTTL = false, 0
	before.Metadata, after.Metadata = nil, nil // the server's own (_nats.req.level: what the stream needs)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("the upgrade changed other settings:\nbefore %+v\nafter  %+v", before, after)
	}
	for k, rev := range revs {
		e, err := kv.Get(ctx, k)
		if err != nil || e.Revision() != rev {
			t.Errorf("%s after the upgrade: %v (revision %d, was %d)", k, err, revisionOf(e), rev)
		}
	}
	if _, err := kv.Create(ctx, "miss.ab", []byte(`{}`), jetstream.KeyTTL(time.Hour)); err != nil {
		t.Errorf("an entry with a TTL after the upgrade: %v", err)
	}
	if err := provision.Check(ctx, js, noProvision); err != nil && strings.Contains(err.Error(), ledger.Bucket) {
		t.Errorf("Check of the upgraded ledger: %v", err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.(*jetstream.KeyValueBucketStatus).LimitMarkerTTL(), provision.LedgerConfig(noProvision).LimitMarkerTTL; got != want {
		t.Errorf("the upgraded bucket's marker TTL %v, want what LedgerConfig creates, %v", got, want)
	}
}

func streamConfig(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamConfig {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config
}

func revisionOf(e jetstream.KeyValueEntry) uint64 {
	if e == nil {
		return 0
	}
	return e.Revision()
}

// The same upgrade on a three-node cluster, the ledger at R3 as deployed:
// JetStream takes it on a replicated stream, and a TTL entry expires.
func TestLedgerUpgradeInPlaceR3(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	js, err := jetstream.New(natstest.Connect(t, c.URLs()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	old := previousLedgerConfig()
	old.Replicas = 3
	kv, err := js.CreateKeyValue(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Create(ctx, "key.k1", []byte(`{"request_id":"r"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := provision.UpgradeLedger(ctx, js); err != nil {
		t.Fatal(err)
	}
	if cfg := streamConfig(t, js, ledgerStream); !cfg.AllowMsgTTL || cfg.Replicas != 3 {
		t.Errorf("after the upgrade: allow_msg_ttl %v, replicas %d", cfg.AllowMsgTTL, cfg.Replicas)
	}
	if e, err := kv.Get(ctx, "key.k1"); err != nil || e.Revision() != rev {
		t.Errorf("key.k1 after the upgrade: %v", err)
	}
	if _, err := kv.Create(ctx, "miss.ab", []byte(`{}`), jetstream.KeyTTL(time.Second)); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 10*time.Second, "the entry to expire", func() bool {
		_, err := kv.Get(ctx, "miss.ab")
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
}
