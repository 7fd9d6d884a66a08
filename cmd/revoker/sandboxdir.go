package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// What a sandbox writes in its directory: jetstream is the embedded NATS
// server's store (requests, results, ledger), the rest its files.
const (
	sandboxStore    = "jetstream"
	sandboxJSON     = "sandbox.json"
	sandboxEnvFile  = "sandbox.env"
	sandboxKeyFile  = "revoker-sandbox.pem"
	sandboxLeakFile = "leaked.pem"
)

// sandboxDirFiles are every name a sandbox writes in its directory.
var sandboxDirFiles = []string{sandboxStore, sandboxJSON, sandboxEnvFile, sandboxKeyFile, sandboxLeakFile}

// sandboxRunningDial bounds the look for a sandbox still serving from an
// earlier run's directory.
const sandboxRunningDial = time.Second

// cleanSandboxDir makes a --dir that held an earlier sandbox run ready for
// a new one. Each run starts a fresh emulator with new keys, so the earlier
// run's store would show its results, ledger records and queued requests
// beside keys that no longer exist. A run starts clean instead: the earlier
// run's store and files are removed, and the log says so; nothing else in
// dir is touched. It refuses, saying why, when a sandbox still serves from
// dir (its NATS answers at the URL of its sandbox.json), and when dir holds
// a store no sandbox wrote (no sandbox.json or revoker-sandbox.pem beside it).
func cleanSandboxDir(dir string, logger *slog.Logger) error {
	var found []string
	for _, name := range sandboxDirFiles {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			found = append(found, name)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("--dir: %w", err)
		}
	}
	if len(found) == 0 {
		return nil
	}
	if !exists(dir, sandboxJSON) && !exists(dir, sandboxKeyFile) {
		return fmt.Errorf("--dir %s holds %s but no %s: not an earlier sandbox run, so it is left alone: choose another --dir", dir, found[0], sandboxJSON)
	}
	if natsURL, ok := runningSandbox(dir); ok {
		return fmt.Errorf("--dir %s belongs to a sandbox that is still running (NATS answers at %s): stop it (Ctrl-C) or choose another --dir; if what answers is no sandbox, remove %s",
			dir, natsURL, filepath.Join(dir, sandboxJSON))
	}
	for _, name := range found {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("--dir: removing the earlier sandbox run's %s: %w", name, err)
		}
	}
	logger.Warn("--dir held an earlier sandbox run: removed its JetStream store (results, ledger, requests) and files; this run starts clean", "dir", dir)
	return nil
}

func exists(dir, name string) bool {
	_, err := os.Lstat(filepath.Join(dir, name))
	return err == nil
}

// runningSandbox reports whether the NATS URL of dir's sandbox.json
// answers: the sandbox that wrote it still runs.
func runningSandbox(dir string) (string, bool) {
	data, err := os.ReadFile(filepath.Join(dir, sandboxJSON))
	if err != nil {
		return "", false
	}
	var info sandboxInfo
	if json.Unmarshal(data, &info) != nil {
		return "", false
	}
	u, err := url.Parse(info.NATSURL)
	if err != nil || u.Host == "" {
		return "", false
	}
	conn, err := net.DialTimeout("tcp", u.Host, sandboxRunningDial)
	if err != nil {
		return "", false
	}
	conn.Close()
	return info.NATSURL, true
}
