package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/budget"
	"github.com/revoker/revoker/worker/console"
	"github.com/revoker/revoker/worker/contain"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/provision"
)

// checker prints one line per verification, or with --json one
// checkLine, and remembers failures.
type checker struct {
	w       io.Writer
	json    *json.Encoder // nil for text
	failed  int
	missing int // streams, consumer or buckets that "run" will create
}

// checkLine is the --json form of one verification.
type checkLine struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

func (c *checker) willCreate(what string) {
	c.missing++
	c.ok(what, "missing; \"revoker run\" creates it")
}

// mustExist fails what, missing although "run" will only bind to it
// (REVOKER_NO_PROVISION), saying how the admin user creates it.
func (c *checker) mustExist(what, how string) {
	c.fail(what, fmt.Errorf("missing, and with REVOKER_NO_PROVISION \"revoker run\" only binds to it: create it as the admin user (%s)", how))
}

func (c *checker) ok(what, detail string) { c.line(checkLine{what, true, detail}) }

func (c *checker) fail(what string, err error) {
	c.failed++
	c.line(checkLine{what, false, err.Error()})
}

func (c *checker) line(l checkLine) {
	switch {
	case c.json != nil:
		_ = c.json.Encode(l)
	case l.OK:
		fmt.Fprintf(c.w, "ok    %s: %s\n", l.Check, l.Detail)
	default:
		fmt.Fprintf(c.w, "FAIL  %s: %s\n", l.Check, l.Detail)
	}
}

// check is "revoker check": everything "run" needs, verified in order. With
// --json it prints only the checkLines; the exit status says the rest.
func check(ctx context.Context, cfg Config, logger *slog.Logger, stdout io.Writer) error {
	c := &checker{w: stdout}
	if cfg.JSON {
		c.json = json.NewEncoder(stdout)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c.ok("configuration", "valid")
	if signsHere(cfg) {
		c.checkKalshi(ctx, cfg)
	} else {
		c.checkWorker(ctx, cfg, logger)
	}
	c.checkNATS(ctx, cfg)
	switch {
	case c.failed > 0 && c.json == nil:
		fmt.Fprintf(stdout, "%s failed\n", plural(c.failed, "check"))
	case c.json == nil:
		fmt.Fprintln(stdout, "all checks passed")
	}
	if c.failed > 0 {
		return exitError{exitFailed}
	}
	return nil
}

func (c *checker) checkKalshi(ctx context.Context, cfg Config) {
	key, err := kalshi.ParsePrivateKey(cfg.KalshiPrivateKey.Bytes())
	if err != nil {
		c.fail("private key", err)
		return
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		c.ok("private key", fmt.Sprintf("RSA-%d loads", k.N.BitLen()))
	case ed25519.PrivateKey:
		c.ok("private key", "Ed25519 loads")
	}
	client, err := newKalshiClientWith(cfg, key)
	if err != nil {
		c.fail("kalshi client", err)
		return
	}
	keys, err := client.ListAPIKeys(ctx)
	if err != nil {
		c.fail("kalshi accepts the signature", fmt.Errorf("GET /api_keys at %s: %w", client.BaseURL(), err))
		return
	}
	own := "not among them"
	if canonicalIDs(keys)[cfg.KalshiKeyID] {
		own = "listed"
	}
	c.ok("kalshi accepts the signature", fmt.Sprintf("%s lists %s; the worker's own key is %s", client.BaseURL(), plural(len(keys), "key"), own))
	c.checkCancelScope(cfg, keys)
	if limits, err := client.AccountLimits(ctx); err != nil {
		c.fail("account limits", err)
	} else {
		c.ok("account limits", fmt.Sprintf("tier %s, read bucket %g tokens/s, capacity %g", limits.UsageTier, limits.Read.RefillRate, limits.Read.BucketCapacity))
	}
}

// checkWorker is the Kalshi part of check without the Kalshi settings
// here: a running worker says, through its console, whether it is ready,
// whether Kalshi accepts its credential, and which replicas the plan lists.
func (c *checker) checkWorker(ctx context.Context, cfg Config, logger *slog.Logger) {
	var h console.Health
	err := askConsole(ctx, cfg, "revoker-check", logger, func(ctx context.Context, cl *console.Client) error {
		var err error
		h, err = cl.Health(ctx)
		return err
	})
	if err != nil {
		c.fail("worker console", err)
		return
	}
	c.ok("worker console", fmt.Sprintf("replica %s (version %s) answered on %s", cell(h.Replica), cell(h.Version), console.SubjectHealth))
	if h.Credential {
		c.ok("kalshi accepts the worker's credential", fmt.Sprintf("key %s at %s", cell(h.SelfKeyID), cell(h.KalshiBaseURL)))
	} else {
		c.fail("kalshi accepts the worker's credential", fmt.Errorf("key %s at %s: %s", cell(h.SelfKeyID), cell(h.KalshiBaseURL), h.CredentialErr))
	}
	if h.Ready {
		c.ok("worker ready", "taking requests")
	} else {
		c.fail("worker ready", errors.New(h.NotReady))
	}
	switch {
	case h.ReplicasErr != "":
		c.ok("replica plan", h.ReplicasErr)
	case len(h.Replicas) == 0:
		c.ok("replica plan", "no replica recorded yet")
	default:
		ids := make([]string, len(h.Replicas))
		for i, r := range h.Replicas {
			ids[i] = cell(r.ID)
		}
		c.ok("replica plan", fmt.Sprintf("%s: %s", plural(len(ids), "replica"), strings.Join(ids, ", ")))
	}
}

func (c *checker) checkNATS(ctx context.Context, cfg Config) {
	nc, err := connectNATS(ctx, cfg, "revoker-check", slog.New(slog.DiscardHandler))
	if err != nil {
		c.fail("nats reachable", err)
		return
	}
	defer nc.Close()
	c.ok("nats reachable", connectedURL(nc))
	js, err := jetstream.New(nc)
	if err != nil {
		c.fail("jetstream", err)
		return
	}
	if info, err := js.AccountInfo(ctx); err != nil {
		// A least-privilege user may not read account info; the streams tell.
		if off := explainJetStream(nc, err); isJetStreamOff(off) {
			c.fail("jetstream", off)
			return
		}
		c.ok("jetstream", "account info not readable with these credentials ("+err.Error()+"); checking the streams")
	} else {
		c.ok("jetstream", fmt.Sprintf("enabled, %s in the account", plural(info.Streams, "stream")))
	}
	for _, name := range []string{cfg.RequestsStream, cfg.ResultsStream, provision.UntrustedStream} {
		what := "stream " + name
		s, err := js.Stream(ctx, name)
		if off := explainJetStream(nc, err); isJetStreamOff(off) {
			c.fail("jetstream", off)
			return
		}
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound) && !cfg.NoProvision:
			c.willCreate(what)
		case errors.Is(err, jetstream.ErrStreamNotFound):
			c.mustExist(what, "nats stream add --config deploy/nats/streams/"+name+".json")
		case err != nil:
			c.fail(what, err)
		default:
			info := s.CachedInfo()
			c.ok(what, fmt.Sprintf("%s retention, %d replicas, %d messages", info.Config.Retention, info.Config.Replicas, info.State.Msgs))
		}
	}
	what := "consumer " + cfg.Consumer
	cons, err := js.Consumer(ctx, cfg.RequestsStream, cfg.Consumer)
	switch {
	case (errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)) && !cfg.NoProvision:
		c.willCreate(what)
	case errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound):
		c.mustExist(what, "nats consumer add "+cfg.RequestsStream+" --config deploy/nats/consumers/revoker.json")
	case err != nil:
		c.fail(what, err)
	default:
		info := cons.CachedInfo()
		c.ok(what, fmt.Sprintf("%d pending, %d being processed, ack wait %v", info.NumPending, info.NumAckPending, info.Config.AckWait))
	}
	// Both buckets, in the mode run will use: run creates what is missing, while
	// with REVOKER_NO_PROVISION it only binds, and every one must be there.
	for _, bucket := range []struct{ name, role string }{
		{ledger.Bucket, "ledger"},
		{budget.ReplicasBucket, "replica plan"},
	} {
		what := bucket.role + " " + bucket.name
		kv, err := js.KeyValue(ctx, bucket.name)
		switch {
		case errors.Is(err, jetstream.ErrBucketNotFound) && !cfg.NoProvision:
			c.willCreate(what)
		case errors.Is(err, jetstream.ErrBucketNotFound):
			c.mustExist(what, "nats kv add "+bucket.name+" ..., as deploy/README.md shows")
		case err != nil:
			c.fail(what, err)
		default:
			if st, err := kv.Status(ctx); err != nil {
				c.fail(what, err)
			} else {
				c.ok(what, fmt.Sprintf("%d entries, kept %v", st.Values(), st.TTL()))
			}
		}
	}
	if c.failed > 0 || c.missing > 0 {
		return
	}
	if err := provision.Check(ctx, js, workerConfig(cfg, nil, nil, nil).Provisioning()); err != nil {
		c.fail("settings the guarantees need", err)
	} else {
		c.ok("settings the guarantees need", "work queue, duplicates windows, ack wait and ledger TTL as required")
	}
}

// checkCancelScope says whether the worker's own key, as the account lists
// it, may cancel the orders REVOKER_CANCEL_ORDERS lets requests cancel: a
// trading scope, and no restriction to one subaccount.
func (c *checker) checkCancelScope(cfg Config, keys []kalshi.APIKey) {
	what := "cancel orders (REVOKER_CANCEL_ORDERS=" + string(cfg.CancelOrders) + ")"
	if !cfg.CancelOrders.NeedsScope() {
		c.ok(what, "off: a request with cancel_orders is revoked and gets cancel_orders_not_allowed")
		return
	}
	var own *kalshi.APIKey
	for i, k := range keys {
		if events.CanonicalAPIKeyID(k.ID) == cfg.KalshiKeyID {
			own = &keys[i]
		}
	}
	switch {
	case own == nil:
		c.fail(what, errors.New("the account does not list the worker's own key, so whether it may cancel orders is unknown"))
	case !contain.CanCancel(own.Scopes):
		c.fail(what, fmt.Errorf("cancelling orders needs a key with the write or write::trade scope; the worker's key has %s", cell(strings.Join(own.Scopes, ","))))
	case own.Subaccount != nil:
		c.fail(what, fmt.Errorf("the worker's key is restricted to subaccount %d: it cannot cancel the orders of another subaccount", *own.Subaccount))
	default:
		c.ok(what, fmt.Sprintf("the worker's key has the scopes %s", cell(strings.Join(own.Scopes, ","))))
	}
}
