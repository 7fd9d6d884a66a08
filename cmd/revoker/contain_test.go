package main

import (
	"context"
	"log/slog"
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker/budget"
	"github.com/revoker/revoker/worker/contain"
)

// REVOKER_CANCEL_ORDERS / --cancel-orders-scope: off by default, the flag
// beats the environment, a bad value is a configuration error; revoke
// --cancel-orders asks for it.
func TestCancelOrdersSettings(t *testing.T) {
	t.Parallel()
	env := kalshiEnv(t)
	if cfg, _ := mustParse(t, "run", nil, env); cfg.CancelOrders != contain.Off {
		t.Errorf("default %q, want off", cfg.CancelOrders)
	}
	env["REVOKER_CANCEL_ORDERS"] = "subaccount"
	if cfg, _ := mustParse(t, "run", nil, env); cfg.CancelOrders != contain.Subaccount {
		t.Errorf("from the environment %q, want subaccount", cfg.CancelOrders)
	}
	if cfg, _ := mustParse(t, "check", []string{"--cancel-orders-scope", "all"}, env); cfg.CancelOrders != contain.All {
		t.Errorf("flag over environment %q, want all", cfg.CancelOrders)
	}
	env["REVOKER_CANCEL_ORDERS"] = "everything"
	_, _, err := parseConfig("run", nil, getenv(env))
	if p := problems(t, err); len(p) != 1 || !strings.Contains(p[0], `REVOKER_CANCEL_ORDERS (--cancel-orders-scope): "everything" is not off, subaccount or all`) {
		t.Errorf("problems %q", p)
	}
	cfg, _ := mustParse(t, "revoke", []string{"--cancel-orders", "k"}, map[string]string{})
	if !cfg.CancelOrdersRequest {
		t.Error("revoke --cancel-orders not set")
	}
}

// End to end through the binary: check says whether the worker's key may
// cancel; keys shows a key's subaccount; revoke --cancel-orders cancels
// the key's subaccount's orders once it is deleted; results and status
// show the blast radius and what was cancelled.
func TestRevokeCancelOrders(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.env["REVOKER_CANCEL_ORDERS"] = "subaccount"
	bot := w.emu.AddSubaccountKey("trading bot", &emulatortest.OtherKey().PublicKey, 3, "read", "write::trade")
	w.emu.AddOrders(3, 2)
	w.emu.AddOrders(4, 1)

	out, _, code := w.run2("", "check")
	if code != 0 || !strings.Contains(out, "ok    cancel orders (REVOKER_CANCEL_ORDERS=subaccount): the worker's key has the scopes read,write\n") {
		t.Errorf("check: exit %d\n%s", code, out)
	}
	out, _, _ = w.run2("", "keys")
	if !regexp.MustCompile(`(?m)^  ` + bot + `\s+trading bot\s+read,write::trade\s+3$`).MatchString(out) {
		t.Errorf("keys does not show the subaccount:\n%s", out)
	}

	w.startRun()
	out, _, code = w.run2("", "revoke", "--cancel-orders", "--json", bot)
	docs := docLines(out)
	if code != 0 || len(docs) != 1 {
		t.Fatalf("revoke: exit %d\n%s", code, out)
	}
	res, err := events.ParseResult([]byte(docs[0]))
	if err != nil || res.Outcome != events.Revoked || res.Containment == nil || res.Containment.OrdersCancelled != 2 ||
		res.KeySubaccount == nil || *res.KeySubaccount != 3 || res.KeyName != "trading bot" {
		t.Fatalf("revoke: %+v %v", res, err)
	}
	if w.emu.RestingOrders(3) != 0 || w.emu.RestingOrders(4) != 1 {
		t.Fatalf("orders left: subaccount 3 %d, 4 %d; want 0, 1", w.emu.RestingOrders(3), w.emu.RestingOrders(4))
	}
	out, _, _ = w.run2("", "results")
	if !regexp.MustCompile(bot + `\s+revoked\s+-\s+1\s+read,write::trade@3\s+2\n`).MatchString(out) {
		t.Errorf("results does not show the blast radius and the cancel:\n%s", out)
	}
	out, _, _ = w.run2("", "status", bot)
	for _, want := range []string{"  name          trading bot\n", "  scopes        read,write::trade\n",
		"  subaccount    3 (the key was restricted to it)\n", "  orders        2 resting orders cancelled after the DELETE\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	// A worker key that cannot trade fails the check.
	ro := w.emu.AddKey("read only", &emulatortest.Key().PublicKey, "read")
	w.env["KALSHI_API_KEY_ID"] = ro
	out, _, code = w.run2("", "check")
	if code == 0 || !strings.Contains(out, "FAIL  cancel orders (REVOKER_CANCEL_ORDERS=subaccount): cancelling orders needs a key with the write or write::trade scope") {
		t.Errorf("check with a read-only key: exit %d\n%s", code, out)
	}
}

// The cancel budget follows the write bucket and the cancel's listed cost
// (GET /account/limits, /account/endpoint_costs): 100 tokens/s at 100 a
// cancel is 0.9 cancels a second, one at a time; a fixed unlimited rate
// leaves cancels unlimited too.
func TestCancelBudgetFromTheAccount(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	cfg, _ := mustParse(t, "run", nil, w.env)
	client, err := newKalshiClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := &account{client: client, cfg: cfg, limiter: budget.NewLimiter(0, 0), cancels: budget.NewLimiter(0, 0), logger: slog.New(slog.DiscardHandler)}
	if err := a.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if perSecond, burst := a.cancels.Configured(); math.Abs(perSecond-0.9) > 1e-9 || burst != 1 {
		t.Errorf("cancel budget %v/s burst %d, want 0.9/s burst 1", perSecond, burst)
	}
	if perSecond, _ := a.limiter.Configured(); math.Abs(perSecond-18) > 1e-9 {
		t.Errorf("delete budget %v/s, want 18/s", perSecond)
	}
	a.cfg.Rate = Rate{}
	a.applyFixedRate()
	if perSecond, _ := a.cancels.Configured(); !math.IsInf(perSecond, 1) {
		t.Errorf("with REVOKER_RATE=0 the cancel budget is %v/s, want unlimited", perSecond)
	}
}
