package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/natstest"
	"github.com/revoker/revoker/worker/provision"
)

// check judges the provisioning mode run will use: with REVOKER_NO_PROVISION
// (flag or environment) run only binds, so every stream, the consumer and both
// buckets must exist, and check names each one missing, whatever the rate share;
// without it, run creates them and check says so.
func TestCheckNoProvisionNeedsEveryBucket(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	js, err := jetstream.New(natstest.Connect(t, w.nats.URL()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	wc := worker.Config{}
	for _, sc := range []jetstream.StreamConfig{provision.RequestsStreamConfig(wc.Provisioning()), provision.ResultsStreamConfig(wc.Provisioning()), provision.UntrustedStreamConfig(wc.Provisioning())} {
		if _, err := js.CreateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.CreateConsumer(ctx, worker.DefaultRequestsStream, provision.ConsumerConfig(wc.Provisioning())); err != nil {
		t.Fatal(err)
	}

	failsNaming := func(what string, want []string, args ...string) {
		t.Helper()
		out, err := w.cli(append([]string{"check"}, args...)...)
		var exit exitError
		if !errors.As(err, &exit) || exit.code != exitFailed {
			t.Errorf("%s: check %q: %v, want exit status %d", what, args, err, exitFailed)
		}
		for _, line := range want {
			if !strings.Contains(out, "FAIL  "+line+": missing, and with REVOKER_NO_PROVISION") {
				t.Errorf("%s: check %q does not fail %s, saying why:\n%s", what, args, line, out)
			}
		}
	}
	// Neither bucket: both are named, not only the first.
	failsNaming("no buckets", []string{"ledger REVOKER_LEDGER", "replica plan REVOKER_REPLICAS"}, "--no-provision")

	if _, err := js.CreateKeyValue(ctx, provision.LedgerConfig(wc.Provisioning())); err != nil {
		t.Fatal(err)
	}
	// The replica plan is missing: with a fixed share too, and with the mode
	// from the environment as the shipped unit and manifests set it.
	failsNaming("no replica plan", []string{"replica plan REVOKER_REPLICAS"}, "--no-provision")
	w.env["REVOKER_RATE_SHARE"] = "0.5"
	failsNaming("no replica plan, fixed share", []string{"replica plan REVOKER_REPLICAS"}, "--no-provision")
	w.env["REVOKER_NO_PROVISION"] = "true"
	failsNaming("no replica plan, REVOKER_NO_PROVISION=true", []string{"replica plan REVOKER_REPLICAS"})

	// run would create it: not a failure.
	delete(w.env, "REVOKER_NO_PROVISION")
	if out, err := w.cli("check"); err != nil || !strings.Contains(out, `ok    replica plan REVOKER_REPLICAS: missing; "revoker run" creates it`) {
		t.Errorf("check without --no-provision: %v\n%s", err, out)
	}

	if _, err := js.CreateKeyValue(ctx, provision.ReplicasConfig(wc.Provisioning())); err != nil {
		t.Fatal(err)
	}
	w.env["REVOKER_NO_PROVISION"] = "true"
	if out, err := w.cli("check"); err != nil || !strings.Contains(out, "all checks passed") || !strings.Contains(out, "ok    settings the guarantees need") {
		t.Errorf("check with everything provisioned: %v\n%s", err, out)
	}
}
