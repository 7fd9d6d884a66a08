package main

import (
	"strings"
	"testing"
)

// status tells apart what an operator must not confuse: a key that is live
// (listed, never revoked by revoker), one revoker revoked, and one that is
// not in this account (not listed and unknown to revoker: a typo, the wrong
// environment, or deleted outside revoker), in text and in --json's state.
func TestStatusTellsTheCasesApart(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	keys := w.seed(3)
	revoked, live, deletedInUI := keys[0], keys[1], keys[2]
	const typo = "00000000-0000-4000-8000-000000000000"
	w.emu.RemoveKey(deletedInUI) // as if deleted in Kalshi's web UI
	stopRun, _ := w.startRun()
	if out, _, code := w.run2("", "revoke", "--requested-by", "oncall", revoked); code != 0 || !strings.HasPrefix(out, revoked+" revoked\n") {
		t.Fatalf("revoke: exit %d\n%s", code, out)
	}

	out, stderr, code := w.run2("", "status", revoked, live, deletedInUI, typo)
	if code != 0 || stderr != "" {
		t.Fatalf("status: exit %d, stderr %q\n%s", code, stderr, out)
	}
	blocks := strings.Split(strings.TrimSuffix(out, "\n"), "\n\n")
	if len(blocks) != 4 {
		t.Fatalf("status: %d blocks, want 4\n%s", len(blocks), out)
	}
	notInAccount := "  revoked       not by revoker (the ledger has no record of it)\n" +
		"  account       does not list the key: not in this account: a wrong ID, the wrong environment, or deleted outside revoker"
	for i, want := range []struct{ has, hasNot []string }{
		{[]string{revoked + "\n  revoked       ", " by request revoker-cli-", "  requested by  oncall", "  account       does not list the key\n"}, []string{"not in this account"}},
		{[]string{live + "\n  revoked       no (the ledger has no record of it)\n  account       lists the key: it is live"}, []string{"not by revoker"}},
		{[]string{deletedInUI + "\n" + notInAccount}, nil},
		{[]string{typo + "\n" + notInAccount}, nil},
	} {
		block := blocks[i] + "\n"
		for _, s := range want.has {
			if !strings.Contains(block, s) {
				t.Errorf("status block %d lacks %q:\n%s", i, s, block)
			}
		}
		for _, s := range want.hasNot {
			if strings.Contains(block, s) {
				t.Errorf("status block %d has %q:\n%s", i, s, block)
			}
		}
	}

	out, _, code = w.run2("", "status", "--json", revoked, live, deletedInUI, typo)
	sts := jsonLines[keyStatus](t, out)
	if code != 0 || len(sts) != 4 {
		t.Fatalf("status --json: exit %d\n%s", code, out)
	}
	for i, want := range []keyState{stateRevoked, stateLive, stateNotInAccount, stateNotInAccount} {
		if sts[i].State != want {
			t.Errorf("status --json of %s: state %q, want %q", sts[i].APIKeyID, sts[i].State, want)
		}
	}

	// Nobody to ask whether the account lists a key revoker never revoked.
	if err := stopRun(); err != nil {
		t.Fatal(err)
	}
	out, _, code = w.operator().run2("", "status", "--json", live)
	if st := jsonLines[keyStatus](t, out); code != exitFailed || len(st) != 1 || st[0].State != stateUnknown {
		t.Errorf("status --json without a worker: exit %d\n%s", code, out)
	}
}
