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
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker"
)

// checker prints one line per verification, or with --json one
// checkLine, and remembers failures.
type checker struct {
	w       io.Writer
	json    *json.Encoder // nil for text
	failed  int
	missing int // streams, consumer or ledger that "run" will create
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
func check(ctx context.Context, cfg Config, stdout io.Writer) error {
	c := &checker{w: stdout}
	if cfg.JSON {
		c.json = json.NewEncoder(stdout)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c.ok("configuration", "valid")
	c.checkKalshi(ctx, cfg)
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
	if limits, err := client.AccountLimits(ctx); err != nil {
		c.fail("account limits", err)
	} else {
		c.ok("account limits", fmt.Sprintf("tier %s, read bucket %g tokens/s, capacity %g", limits.UsageTier, limits.Read.RefillRate, limits.Read.BucketCapacity))
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
		if !errors.Is(err, jetstream.ErrJetStreamNotEnabled) && !errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			c.ok("jetstream", "account info not readable with these credentials ("+err.Error()+"); checking the streams")
		} else {
			c.fail("jetstream", err)
			return
		}
	} else {
		c.ok("jetstream", fmt.Sprintf("enabled, %s in the account", plural(info.Streams, "stream")))
	}
	for _, name := range []string{cfg.RequestsStream, cfg.ResultsStream, worker.UntrustedStream} {
		what := "stream " + name
		s, err := js.Stream(ctx, name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound) && !cfg.NoProvision:
			c.willCreate(what)
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
	case err != nil:
		c.fail(what, err)
	default:
		info := cons.CachedInfo()
		c.ok(what, fmt.Sprintf("%d pending, %d being processed, ack wait %v", info.NumPending, info.NumAckPending, info.Config.AckWait))
	}
	what = "ledger " + worker.LedgerBucket
	kv, err := js.KeyValue(ctx, worker.LedgerBucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound) && !cfg.NoProvision:
		c.willCreate(what)
		return
	case err != nil:
		c.fail(what, err)
		return
	default:
		if st, err := kv.Status(ctx); err != nil {
			c.fail(what, err)
		} else {
			c.ok(what, fmt.Sprintf("%d entries, kept %v", st.Values(), st.TTL()))
		}
	}
	if cfg.Rate.Auto && cfg.RateShare == 0 {
		what = "replica plan " + worker.ReplicasBucket
		switch _, err := js.KeyValue(ctx, worker.ReplicasBucket); {
		case errors.Is(err, jetstream.ErrBucketNotFound) && !cfg.NoProvision:
			c.willCreate(what)
		case err != nil:
			c.fail(what, fmt.Errorf("REVOKER_RATE_SHARE=auto needs it: %w", err))
		default:
			c.ok(what, "the replicas split the account's budget")
		}
	}
	if c.failed > 0 || c.missing > 0 {
		return
	}
	if err := worker.CheckSettings(ctx, js, workerConfig(cfg, nil, nil, nil)); err != nil {
		c.fail("settings the guarantees need", err)
	} else {
		c.ok("settings the guarantees need", "work queue, duplicates windows, ack wait and ledger TTL as required")
	}
}
