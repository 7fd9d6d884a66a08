package deploy_test

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/provision"
)

const (
	untrustedStream     = "KEY_REVOKE_UNTRUSTED"
	untrustedSubject    = "keys.revoke.untrusted"
	untrustedStreamFile = "nats/streams/" + untrustedStream + ".json"
)

// TestUntrustedStreamFileMatchesProvisioning holds the shipped definition of the
// untrusted rejections' stream to exactly what revoker run provisions
// (provision.UntrustedStreamConfig) at three replicas, and to the contract of
// design.md: its own stream, limits retention, 7 days, 256 MiB, oldest first out.
func TestUntrustedStreamFileMatchesProvisioning(t *testing.T) {
	got := streamConfig(t, untrustedStreamFile)
	want := provision.UntrustedStreamConfig(worker.Config{Replicas: 3}.Provisioning())
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Errorf("%s differs from what revoker run provisions:\n got %s\nwant %s", untrustedStreamFile, g, w)
	}
	res := streamConfig(t, "nats/streams/"+resultsStream+".json")
	checks := []struct {
		what string
		ok   bool
	}{
		{"the stream is " + untrustedStream + " on " + untrustedSubject + ".>", got.Name == untrustedStream && provision.UntrustedStream == untrustedStream &&
			strings.Join(got.Subjects, ",") == untrustedSubject+".>" && provision.UntrustedSubject == untrustedSubject},
		{"limits retention, 7 days, 256 MiB", got.Retention == jetstream.LimitsPolicy && got.MaxAge == 7*24*time.Hour && got.MaxBytes == 256<<20},
		{"the oldest rejections are dropped first", got.Discard == jetstream.DiscardOld},
		{"it takes a rejection of up to events.MaxResultSize with its headers", got.MaxMsgSize >= events.MaxResultSize+1<<10},
		{"file-backed with 3 replicas", got.Storage == jetstream.FileStorage && got.Replicas == 3},
		{"read like the audit log, by direct gets", got.AllowDirect},
		{"a repeated rejection of one message is dropped for at least 1h", got.Duplicates >= time.Hour},
		{"its subjects are not the results stream's", !strings.HasPrefix(untrustedSubject+".", strings.TrimSuffix(res.Subjects[0], ">"))},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("contract: %s: not so", c.what)
		}
	}
}

// TestAccountHoldsTheUntrustedStream: the REVOKER account may hold every stream
// revoker needs (requests, results, untrusted rejections, the ledger and the
// replica plan) and reserve what the bounded ones reserve at three replicas, and
// the deployment docs create the untrusted stream and the ledger with per-entry
// TTLs.
func TestAccountHoldsTheUntrustedStream(t *testing.T) {
	conf := string(readFile(t, "nats/accounts.conf"))
	num := func(re string) int64 {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(conf)
		if m == nil {
			t.Fatalf("accounts.conf: no match for %s", re)
		}
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := num(`max_streams:\s*(\d+)`); n < 5 {
		t.Errorf("max_streams %d: revoker needs 5 streams", n)
	}
	cfg := worker.Config{Replicas: 3}
	reserved := 3 * (provision.ResultsStreamConfig(cfg.Provisioning()).MaxBytes + provision.UntrustedStreamConfig(cfg.Provisioning()).MaxBytes + provision.LedgerConfig(cfg.Provisioning()).MaxBytes)
	if maxFile := num(`max_file:\s*(\d+)GB`) * 1e9; maxFile <= reserved {
		t.Errorf("max_file %d bytes does not hold the %d the bounded streams reserve", maxFile, reserved)
	}
	readme := string(readFile(t, "README.md"))
	for _, want := range []string{"nats stream add --config deploy/" + untrustedStreamFile, "--marker-ttl "} {
		if !strings.Contains(readme, want) {
			t.Errorf("README.md does not say %q", want)
		}
	}
	if got := ledgerConfig(t).LimitMarkerTTL; got <= 0 {
		t.Error("README.md's nats kv add makes a ledger without per-entry TTLs")
	}
}
