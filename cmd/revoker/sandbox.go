package main

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator"
)

// sandboxTradingSubaccount is the subaccount the sandbox's trading key is
// restricted to.
const sandboxTradingSubaccount = 1

// sandboxInfo is DIR/sandbox.json: enough for any Kalshi client, the
// official SDKs too, to talk to the emulator, and for any NATS client to
// send requests.
type sandboxInfo struct {
	NATSURL        string   `json:"nats_url"`
	KalshiBaseURL  string   `json:"kalshi_base_url"`
	APIKeyID       string   `json:"api_key_id"`
	PrivateKeyPath string   `json:"private_key_path"`
	Keys           []string `json:"keys"`
	TradingKeyID   string   `json:"trading_key_id"` // restricted to subaccount 1, with resting orders
}

// sandbox is "revoker sandbox": an embedded NATS JetStream server, the
// Kalshi emulator seeded with keys and the worker wired to both. A
// temporary directory it made is removed when it stops, after everything
// in it has stopped; a --dir is left as it is.
func sandbox(ctx context.Context, cfg Config, logger *slog.Logger, stdout io.Writer) error {
	dir := cfg.SandboxDir
	if dir == "" {
		d, err := os.MkdirTemp("", "revoker-sandbox-")
		if err != nil {
			return err
		}
		dir = d
		defer func() {
			if err := os.RemoveAll(d); err != nil {
				logger.Warn("cannot remove the sandbox's temporary directory", "dir", d, "err", err)
			}
		}()
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	// sandbox.env and sandbox.json name files in dir: from anywhere.
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	if cfg.SandboxDir != "" {
		if err := cleanSandboxDir(dir, logger); err != nil {
			return err
		}
	}

	ns, err := startSandboxNATS(cfg.NATSListen, filepath.Join(dir, sandboxStore))
	if err != nil {
		return err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()

	emu := emulator.New(emulator.Options{})
	emu.SetFaults(cfg.Faults.emulatorFaults())
	emuURL, stopEmu, err := serveEmulator(cfg.KalshiListen, cfg.Faults.withLatency(emu))
	if err != nil {
		return fmt.Errorf("--kalshi-listen %s: %w", cfg.KalshiListen, err)
	}
	defer func() { stopEmu(); _ = emu.Close() }()

	// The worker's own key: RSA-2048 in PKCS#1, as Kalshi's web UI hands out.
	signer, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	selfID := emu.AddKey("revoker-sandbox", &signer.PublicKey, "read", "write")
	keyPath := filepath.Join(dir, sandboxKeyFile)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(signer)})
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	seeded := make([]string, cfg.SandboxKeys)
	leakedAt := max(len(seeded)-2, 0) // not LEAKED_KEY_ID, the last one, nor --demo's two where there are more
	leakedPath := filepath.Join(dir, sandboxLeakFile)
	for i := range seeded {
		if i == leakedAt {
			// A key whose PEM "leaked", to rehearse revoking by the PEM alone:
			// RSA-2048 in PKCS#1, what a scanner finds in a gist.
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				return err
			}
			seeded[i] = emu.AddKey(fmt.Sprintf("sandbox-key-%d", i+1), &k.PublicKey, "read", "write")
			leaked := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
			if err := os.WriteFile(leakedPath, leaked, 0o600); err != nil {
				return err
			}
			continue
		}
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		seeded[i] = emu.AddKey(fmt.Sprintf("sandbox-key-%d", i+1), pub, "read", "write")
	}

	// A leaked trading key to rehearse containment with: restricted to
	// subaccount 1, which has resting orders, as the primary account does.
	tradingPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	tradingID := emu.AddSubaccountKey("sandbox-trading-bot", tradingPub, sandboxTradingSubaccount, "read", "write::trade")
	emu.AddOrders(sandboxTradingSubaccount, 3)
	emu.AddOrders(0, 2)

	client, err := kalshi.New(kalshi.Config{BaseURL: emuURL, KeyID: selfID, PrivateKey: signer, UserAgent: userAgent()})
	if err != nil {
		return err
	}
	// The worker's inbox prefix, as in production (_INBOX.worker).
	nc, err := nats.Connect(ns.ClientURL(), nats.Name("revoker-sandbox"), nats.MaxReconnects(-1), nats.CustomInboxPrefix(cmp.Or(cfg.NATSInboxPrefix, inboxWorker)))
	if err != nil {
		return fmt.Errorf("connecting to the embedded NATS server: %w", err)
	}
	defer nc.Close()

	cfg.KalshiKeyID = selfID
	cfg.KalshiBaseURL = emuURL
	info := sandboxInfo{NATSURL: ns.ClientURL(), KalshiBaseURL: emuURL, APIKeyID: selfID, PrivateKeyPath: keyPath, Keys: seeded, TradingKeyID: tradingID}
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- runService(ctx, cfg, logger, client, nc, func() { close(ready) })
	}()
	select {
	case <-ready:
	case err := <-done:
		return err
	}
	if err := writeJSONFile(filepath.Join(dir, sandboxJSON), info); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, sandboxEnvFile), []byte(sandboxEnv(info, leakedPath))); err != nil {
		return err
	}
	printBanner(stdout, cfg, info, dir)

	if cfg.Demo {
		demo := cfg
		demo.Timeout = 30 * time.Second
		demo.Reason = "sandbox demo"
		demo.RequestedBy = "revoker sandbox --demo"
		fmt.Fprintf(stdout, "Demo: revoking %s\n", strings.Join(seeded[:min(2, len(seeded))], " and "))
		if err := printRevocations(ctx, nc, demo, seeded[:min(2, len(seeded))], stdout, stdout); err != nil && !isExit(err) {
			logger.Error("demo", "err", err)
		}
		fmt.Fprintln(stdout, "The sandbox keeps serving; press Ctrl-C to stop it.")
	}
	return <-done
}

// startSandboxNATS starts an embedded JetStream server on addr.
func startSandboxNATS(addr, storeDir string) (*server.Server, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--nats-listen %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("--nats-listen %q: the port is not a number", addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "revoker-sandbox",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("the embedded NATS server did not start on %s (is the port in use? --nats-listen 127.0.0.1:0 picks a free one)", addr)
	}
	return ns, nil
}

// serveEmulator serves h, the emulator, on addr and returns its base URL.
func serveEmulator(addr string, h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() { _ = srv.Serve(ln) }()
	return emulatorURL(ln.Addr().(*net.TCPAddr)), func() { _ = srv.Close() }, nil
}

// emulatorURL is the base URL the sandbox's clients use for the emulator
// listening at addr: over loopback when it listens on every address, since
// plain http is for loopback only.
func emulatorURL(addr *net.TCPAddr) string {
	host := addr.IP.String()
	if addr.IP == nil || addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(addr.Port)) + emulator.BasePath
}

// writeJSONFile writes v atomically: readers see all of it or nothing.
func writeJSONFile(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(data, '\n'))
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// exportLine is the shell command that points revoker at the sandbox.
func exportLine(info sandboxInfo) string {
	return "export NATS_URL=" + shellQuote(info.NATSURL) +
		" KALSHI_BASE_URL=" + shellQuote(info.KalshiBaseURL) +
		" KALSHI_API_KEY_ID=" + shellQuote(info.APIKeyID) +
		" KALSHI_PRIVATE_KEY_PATH=" + shellQuote(info.PrivateKeyPath)
}

// sandboxEnv is DIR/sandbox.env: ". DIR/sandbox.env" in a POSIX shell points
// every later revoker command at the sandbox. LEAKED_KEY_ID, the last seeded
// key (--demo revokes the first two), is the key the README's incident
// runbook rehearses with; LEAKED_PEM the private key of another one;
// TRADING_KEY_ID the subaccount key with resting orders; OLD_KEY_ID the
// first seeded key, the one its rotation schedules.
func sandboxEnv(info sandboxInfo, leakedPEM string) string {
	return "# Written by revoker sandbox; \". sandbox.env\" points revoker at it while it runs.\n" +
		exportLine(info) + "\n" +
		"# A seeded key to rehearse the incident runbook with.\n" +
		"LEAKED_KEY_ID=" + shellQuote(info.Keys[len(info.Keys)-1]) + "\n" +
		"# The private key of another seeded key, as if it leaked: revoker revoke --leaked-key \"$LEAKED_PEM\"\n" +
		"LEAKED_PEM=" + shellQuote(leakedPEM) + "\n" +
		"# A trading key restricted to subaccount 1, which has resting orders: revoker revoke --cancel-orders \"$TRADING_KEY_ID\"\n" +
		"TRADING_KEY_ID=" + shellQuote(info.TradingKeyID) + "\n" +
		"# A seeded key to rehearse a rotation with: revoker revoke --at +24h \"$OLD_KEY_ID\"\n" +
		"OLD_KEY_ID=" + shellQuote(info.Keys[0]) + "\n"
}

// shellQuote quotes s for a POSIX shell when it needs quoting.
func shellQuote(s string) string {
	safe := s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-:+,=@%", r))
	}) < 0
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func printBanner(w io.Writer, cfg Config, info sandboxInfo, dir string) {
	metrics := "off"
	if cfg.HTTPAddr != "" {
		metrics = "http://" + cfg.HTTPAddr + "/metrics"
	}
	faults := ""
	if cfg.Faults.active() {
		faults = "\n  Kalshi faults    " + cfg.Faults.String()
	}
	last := info.Keys[len(info.Keys)-1]
	fmt.Fprintf(w, `revoker sandbox is ready.

  NATS JetStream   %s
  Kalshi emulator  %s%s
  worker key       %s (%s)
  metrics          %s
  sandbox.json     %s

Seeded API keys:
%s

In another terminal, point revoker at the sandbox (or: . %s):
  %s
then try (revoker not installed? in a clone, go run ./cmd/revoker does the same):
  revoker keys
  revoker revoke --dry-run %s
  revoker revoke %s
  revoker revoke --leaked-key %s
  revoker results --since 1h
  revoker status %s

Or publish a request with any NATS client on %q:
  {"id":"try-1","api_key_id":"%s","reason":"trying the sandbox"}
and watch the results on %q.

`, info.NATSURL, info.KalshiBaseURL, faults, info.APIKeyID, info.PrivateKeyPath, metrics, filepath.Join(dir, sandboxJSON),
		indent(strings.Join(info.Keys, "\n"), "  "),
		shellQuote(filepath.Join(dir, sandboxEnvFile)), exportLine(info),
		last, last, shellQuote(filepath.Join(dir, sandboxLeakFile)), last,
		cfg.RequestsSubject, info.Keys[max(len(info.Keys)-2, 0)], cfg.ResultsSubject+".>")
}

func isExit(err error) bool {
	var exit exitError
	return errors.As(err, &exit)
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+prefix)
}
