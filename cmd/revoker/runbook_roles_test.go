package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker/natstest"
)

// rolesConf is a NATS configuration whose requester and auditor may do
// exactly what the operator contract grants them, the console included:
// the requester publishes requests, asks the console for plans, keys,
// status and health, follows results (and untrusted rejections) and reads
// the ledger's key entries; the auditor reads the results and untrusted
// streams, the ledger's key entries, and asks the console for keys, status
// and health. Each subscribes only to its own inbox (INBOX is filled in:
// _INBOX.<role> once the binary sets per-role inbox prefixes). The worker
// is not what this test is about: it may do anything, and answers through
// allow_responses as deployed.
const rolesConf = `
jetstream: enabled
accounts: {
  REVOKER: {
    jetstream: enabled
    users: [
      { nkey: %[1]s, permissions: { publish: ">", subscribe: ">", allow_responses: true } }
      { nkey: %[2]s, permissions: {
          publish: { allow: [
            "keys.revoke.requests"
            "$JS.API.STREAM.INFO.KV_REVOKER_LEDGER"
            "$JS.API.DIRECT.GET.KV_REVOKER_LEDGER.$KV.REVOKER_LEDGER.key.>"
            "revoker.console.plan"
            "revoker.console.keys"
            "revoker.console.status"
            "revoker.console.health"
          ] }
          subscribe: { allow: ["keys.revoke.results.>", "keys.revoke.untrusted.>", "%[4]s"] }
      } }
      { nkey: %[3]s, permissions: {
          publish: { allow: [
            "$JS.API.STREAM.INFO.KEY_REVOKE_RESULTS"
            "$JS.API.DIRECT.GET.KEY_REVOKE_RESULTS"
            "$JS.API.STREAM.MSG.GET.KEY_REVOKE_RESULTS"
            "$JS.API.STREAM.INFO.KEY_REVOKE_UNTRUSTED"
            "$JS.API.DIRECT.GET.KEY_REVOKE_UNTRUSTED"
            "$JS.API.STREAM.MSG.GET.KEY_REVOKE_UNTRUSTED"
            "$JS.API.STREAM.INFO.KV_REVOKER_LEDGER"
            "$JS.API.DIRECT.GET.KV_REVOKER_LEDGER.$KV.REVOKER_LEDGER.key.>"
            "revoker.console.keys"
            "revoker.console.status"
            "revoker.console.health"
          ] }
          subscribe: { allow: ["keys.revoke.results.>", "%[5]s"] }
      } }
    ]
  }
}
`

// inboxGrant is what a role may subscribe to for its replies: its own
// inbox prefix once the binary sets one per role (NATS_INBOX_PREFIX),
// until then every inbox.
func inboxGrant(role string) string {
	if strings.Contains(usage("status"), "--nats-inbox-prefix") {
		return "_INBOX." + role + ".>"
	}
	return "_INBOX.>"
}

// The README's incident runbook, every step, as a user holding only the
// requester's and the auditor's NATS credentials and no Kalshi setting:
// revoke (every form) as the requester; status, keys and results as the
// auditor. The worker's console answers what needs the account.
func TestIncidentRunbookLeastPrivilege(t *testing.T) {
	t.Parallel()
	lines := runbookCommands(t)
	if lines == nil {
		t.Skipf("%s has no \"## Incident runbook\" section yet", runbookFile)
	}
	dir := t.TempDir()
	seeds := map[string]string{}
	var pubs []any
	for _, role := range []string{"worker", "requester", "auditor"} {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		seeds[role] = filepath.Join(dir, role+".nk")
		if err := os.WriteFile(seeds[role], seed, 0o600); err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, pub)
	}
	conf := filepath.Join(dir, "roles.conf")
	text := fmt.Sprintf(rolesConf, append(pubs, inboxGrant("requester"), inboxGrant("auditor"))...)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t, natstest.WithConfigFile(conf))

	// The account as the sandbox seeds it: revoker's own key, five others,
	// the private key of one of them as the leaked PEM, and a trading key
	// restricted to a subaccount that has resting orders, as the primary
	// account does.
	emu := emulatortest.Start(t, emulator.Options{})
	selfID := emu.AddKey("revoker-sandbox", &emulatortest.Key().PublicKey, "read", "write")
	var seeded []string
	for i := 1; i <= 4; i++ {
		seeded = append(seeded, emu.AddKey(fmt.Sprintf("sandbox-key-%d", i), &emulatortest.Key().PublicKey, "read", "write"))
	}
	leaked, pem := emulatortest.NewKeyPEM(t, emulatortest.PKCS1RSA)
	emu.AddKey("sandbox-key-5", leaked.Public(), "read", "write")
	leakedPEM := filepath.Join(dir, "leaked.pem")
	if err := os.WriteFile(leakedPEM, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	trading := emu.AddSubaccountKey("sandbox-trading-bot", &emulatortest.OtherKey().PublicKey, sandboxTradingSubaccount, "read", "write::trade")
	emu.AddOrders(sandboxTradingSubaccount, 3)
	emu.AddOrders(0, 2)

	httpAddr := natstest.FreeAddr(t)
	workerEnv := map[string]string{
		"NATS_URL": srv.URL(), "NATS_NKEY_SEED": seeds["worker"],
		"KALSHI_BASE_URL": emu.URL(), "KALSHI_API_KEY_ID": selfID, "KALSHI_PRIVATE_KEY_PATH": emulatortest.WritePEM(t, emulatortest.Key()),
		"REVOKER_HTTP_ADDR": httpAddr, "REVOKER_LOG_FORMAT": "json", "REVOKER_CANCEL_ORDERS": "subaccount",
	}
	logs := &syncBuffer{}
	stop, _ := natstest.Go(t, 30*time.Second, "run did not stop", func(ctx context.Context) error {
		return run(ctx, []string{"run"}, getenv(workerEnv), nil, io.Discard, logs)
	})
	t.Cleanup(func() {
		if err := stop(); errors.Is(err, natstest.ErrStillRunning) {
			t.Error(err)
		}
	})
	natstest.WaitFor(t, 30*time.Second, "the worker ready", func() bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// What ". sandbox.env" sets, less the Kalshi settings.
	env := map[string]string{"NATS_URL": srv.URL(), "REVOKER_LOG_FORMAT": "json", "LEAKED_KEY_ID": seeded[0], "LEAKED_PEM": leakedPEM,
		"TRADING_KEY_ID": trading, "OLD_KEY_ID": seeded[1]}
	runRunbook(t, lines, env, runbookHooks{
		sandbox: func([]string) {},
		source:  func(string) {},
		as: func(words []string) map[string]string {
			role := "auditor"
			if words[1] == "revoke" {
				role = "requester"
			}
			e := map[string]string{"NATS_NKEY_SEED": seeds[role]}
			for k, v := range env {
				e[k] = v
			}
			return e
		},
	})
	if emu.RestingOrders(sandboxTradingSubaccount) != 0 || emu.RestingOrders(0) != 2 {
		t.Errorf("resting orders: subaccount %d %d, primary %d; want 0, 2 (only the trading key's subaccount's cancelled)",
			sandboxTradingSubaccount, emu.RestingOrders(sandboxTradingSubaccount), emu.RestingOrders(0))
	}
	// The grants bite: the auditor may not ask for a plan, nor the requester
	// read the audit log.
	auditor := &world{t: t, env: map[string]string{"NATS_URL": srv.URL(), "NATS_NKEY_SEED": seeds["auditor"],
		"NATS_INBOX_PREFIX": "_INBOX.auditor", "REVOKER_LOG_FORMAT": "json"}}
	if out, stderr, code := auditor.run2("", "revoke", "--dry-run", seeded[1]); code == 0 || out != "" ||
		!strings.Contains(stderr, "the NATS server refused") || !strings.Contains(stderr, "revoker.console.plan") {
		t.Errorf("a plan as the auditor: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	requester := &world{t: t, env: map[string]string{"NATS_URL": srv.URL(), "NATS_NKEY_SEED": seeds["requester"],
		"NATS_INBOX_PREFIX": "_INBOX.requester", "REVOKER_LOG_FORMAT": "json"}}
	if _, stderr, code := requester.run2("", "results"); code == 0 || !strings.Contains(stderr, "ermission") {
		t.Errorf("results as the requester: exit %d, stderr %q", code, stderr)
	}
	if strings.Contains(strings.ToLower(logs.String()), "permissions violation") {
		t.Errorf("the worker hit a permission it lacks:\n%s", logs)
	}
}
