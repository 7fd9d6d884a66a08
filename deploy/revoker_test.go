package deploy_test

import (
	"bytes"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker/natstest"
)

// buildRevoker builds ./cmd/revoker once into a temporary directory.
func buildRevoker(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "revoker")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/revoker")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestRevokerAsTheWorkerUser runs the real binary against deploy/nats's
// cluster with nothing but the least-privilege users, each command on its
// role's default inbox prefix: the worker binds without provisioning, a
// requester signs and publishes, the key goes, and the auditor reads it.
func TestRevokerAsTheWorkerUser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts a cluster")
	}
	c := startNATSCluster(t)
	bin := buildRevoker(t)

	emu := emulatortest.Start(t, emulator.Options{})
	key := emulatortest.Key()
	selfID := emu.AddKey("revoker", &key.PublicKey, "read", "write")
	victim := emu.AddKey("leaked", &key.PublicKey, "read")
	keyPath := emulatortest.WritePEM(t, key)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := ln.Addr().String()
	ln.Close()

	var workerLog bytes.Buffer
	worker := exec.Command(bin, "run", "--no-provision")
	worker.Env = []string{
		"NATS_URL=" + c.URL,
		"NATS_NKEY_SEED=" + c.SeedFile(t, userWorker),
		"KALSHI_BASE_URL=" + emu.URL(),
		"KALSHI_API_KEY_ID=" + selfID,
		"KALSHI_PRIVATE_KEY_PATH=" + keyPath,
		"REVOKER_HTTP_ADDR=" + httpAddr,
		"REVOKER_TRUSTED_SIGNERS=" + c.PublicKey(t, userRequester),
		"REVOKER_LOG_FORMAT=json",
	}
	worker.Stdout, worker.Stderr = &workerLog, &workerLog
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- worker.Wait() }()
	t.Cleanup(func() {
		if worker.ProcessState == nil {
			_ = worker.Process.Kill()
			<-exited
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

	seed := c.SeedFile(t, userRequester)
	revoke := exec.Command(bin, "revoke", "--timeout", "30s", "--reason", "deploy test", victim)
	revoke.Env = []string{"NATS_URL=" + c.URL, "NATS_NKEY_SEED=" + seed, "REVOKER_SIGNER_SEED=" + seed}
	out, err := revoke.CombinedOutput()
	if err != nil || !strings.Contains(string(out), victim+" revoked") {
		t.Fatalf("revoker revoke as the requester: %v\n%s\nworker log:\n%s", err, out, workerLog.String())
	}
	if emu.HasKey(victim) {
		t.Error("the key still exists")
	}

	// The auditor's commands work with nothing but its seed, on its own inbox
	// prefix by default; with another role's prefix they fail at once, saying so.
	auditor := []string{"NATS_URL=" + c.URL, "NATS_NKEY_SEED=" + c.SeedFile(t, userAuditor)}
	for _, args := range [][]string{{"results", "--key", victim}, {"status", victim}} {
		cmd := exec.Command(bin, args...)
		cmd.Env = auditor
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), victim) {
			t.Errorf("revoker %s as the auditor: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	cmd := exec.Command(bin, "results", "--key", victim)
	cmd.Env = append(auditor, "NATS_INBOX_PREFIX=_INBOX.requester")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "NATS_INBOX_PREFIX") {
		t.Errorf("revoker results as the auditor on the requester's inbox prefix: %v, want a refusal naming NATS_INBOX_PREFIX\n%s", err, out)
	}

	_ = worker.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the worker exited with %v after SIGTERM\n%s", err, workerLog.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not stop within 30s of SIGTERM")
	}
	if strings.Contains(strings.ToLower(workerLog.String()), "permissions violation") {
		t.Errorf("the worker hit a permission it lacks:\n%s", workerLog.String())
	}
}
