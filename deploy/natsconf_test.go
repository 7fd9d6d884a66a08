package deploy_test

import (
	"flag"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// routePasswordPlaceholder is what cluster-routes.conf.example asks to replace.
const routePasswordPlaceholder = "REPLACE-WITH-ROUTE-PASSWORD"

// checkConfig is `nats-server -t -c file`, in process: the server's own flag
// handling with -t, exactly as nats-server's main calls it. That processes the
// configuration file and any warning fails the check as an error does.
func checkConfig(file string) (*server.Options, error) {
	fs := flag.NewFlagSet("nats-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return server.ConfigureOptions(fs, []string{"-t", "-c", file}, server.PrintServerAndExit, fs.Usage, server.PrintTLSHelpAndDie)
}

// startupCheck is what nats-server does with the options next, short of
// listening: server.NewServer validates them as a whole (a JetStream cluster
// without a server name, accounts and users that do not fit, ...).
func startupCheck(opts *server.Options) error {
	s, err := server.NewServer(opts)
	if err != nil {
		return err
	}
	s.Shutdown()
	return nil
}

var includeRE = regexp.MustCompile(`(?m)^\s*include\s+["']?([^"'\s]+)["']?`)

// topLevelConfigs returns the .conf files of dir that no other .conf file of dir
// includes (the files nats-server is started with), and fails the test if an
// include names a file that is not there.
func topLevelConfigs(t *testing.T, dir string) []string {
	t.Helper()
	files := glob(t, filepath.Join(dir, "*.conf"))
	included := map[string]bool{}
	for _, f := range files {
		for _, m := range includeRE.FindAllStringSubmatch(string(readFile(t, f)), -1) {
			inc := filepath.Join(filepath.Dir(f), m[1])
			if !slices.Contains(files, inc) {
				t.Errorf("%s includes %s, which is not in %s", f, m[1], dir)
			}
			included[inc] = true
		}
	}
	var top []string
	for _, f := range files {
		if !included[f] {
			top = append(top, f)
		}
	}
	return top
}

// TestNATSConfigCheck runs the server's configuration check (nats-server -t) on
// every top-level file of deploy/nats as shipped, in place, with the encryption key
// in the environment (JS_KEY): the three nodes load without a file made by hand, and
// every other .conf file is one they include. It also checks what the shipped files
// configure.
func TestNATSConfigCheck(t *testing.T) {
	jsKey := randomHex(t, 32) // as openssl rand -hex 32 makes it
	t.Setenv(jsKeyEnv, jsKey)
	top := topLevelConfigs(t, "nats")
	var names []string
	for _, f := range top {
		names = append(names, filepath.Base(f))
	}
	if want := []string{"nats-1.conf", "nats-2.conf", "nats-3.conf"}; !slices.Equal(names, want) {
		t.Errorf("top-level configuration files %q, want %q", names, want)
	}
	for _, f := range top {
		opts, err := checkConfig(f)
		if err != nil {
			t.Errorf("nats-server -t -c %s: %v", f, err)
			continue
		}
		if err := startupCheck(opts); err != nil {
			t.Errorf("%s: the server refuses its options: %v", f, err)
		}

		node := strings.TrimSuffix(filepath.Base(f), ".conf")
		if opts.ServerName != node {
			t.Errorf("%s: server_name %q, want %q", f, opts.ServerName, node)
		}
		if !opts.JetStream || opts.Cluster.Name == "" {
			t.Errorf("%s: want JetStream in a named cluster; got jetstream=%v cluster=%q", f, opts.JetStream, opts.Cluster.Name)
		}
		// The shipped seed routes: the three nodes by name, on the route port.
		var routes []string
		for _, u := range opts.Routes {
			routes = append(routes, u.Host)
		}
		if want := []string{"nats-1:6222", "nats-2:6222", "nats-3:6222"}; !slices.Equal(routes, want) || opts.Cluster.Port != 6222 {
			t.Errorf("%s: routes %q on cluster port %d, want %q on 6222", f, routes, opts.Cluster.Port, want)
		}
		// A committed route password would be no secret: authentication is the override's.
		if opts.Cluster.Username != "" || opts.Cluster.Password != "" {
			t.Errorf("%s: the shipped files set route credentials; they belong in the override only", f)
		}
		// Encryption at rest, with the key from the environment only.
		if opts.JetStreamCipher != server.ChaCha || opts.JetStreamKey != jsKey {
			t.Errorf("%s: JetStream cipher %v with the key from %s: %v; want chachapoly with it", f, opts.JetStreamCipher, jsKeyEnv, opts.JetStreamKey == jsKey)
		}
		if opts.SystemAccount != "SYS" {
			t.Errorf("%s: system account %q", f, opts.SystemAccount)
		}
		if len(opts.Nkeys) != len(userNkeyVars) || len(opts.Users) != 0 || opts.NoAuthUser != "" {
			t.Errorf("%s: want exactly %d nkey users and no password or anonymous users, got %d nkeys, %d users, no_auth_user %q",
				f, len(userNkeyVars), len(opts.Nkeys), len(opts.Users), opts.NoAuthUser)
		}
		for _, u := range opts.Nkeys {
			if u.Account == nil || u.Account.Name != "REVOKER" && u.Account.Name != "SYS" {
				t.Errorf("%s: user %s outside REVOKER and SYS", f, u.Nkey)
			}
			if u.Account != nil && u.Account.Name == "REVOKER" && u.Permissions == nil {
				t.Errorf("%s: REVOKER user %s without permissions", f, u.Nkey)
			}
		}
	}
}

// TestNATSConfigNeedsTheEncryptionKey: a node without JS_KEY in its environment does
// not start (it would otherwise write leaked keys to disk in clear), and says why.
func TestNATSConfigNeedsTheEncryptionKey(t *testing.T) {
	t.Setenv(jsKeyEnv, "")
	os.Unsetenv(jsKeyEnv) // t.Setenv restores it afterwards
	for _, f := range topLevelConfigs(t, "nats") {
		if _, err := checkConfig(f); err == nil || !strings.Contains(err.Error(), jsKeyEnv) {
			t.Errorf("nats-server -t -c %s without %s: %v, want a refusal naming it", f, jsKeyEnv, err)
		}
	}
}

// TestNATSRouteOverride installs cluster-routes.conf.example as cluster-routes.conf,
// as an operator does, and runs the configuration check on every node: the
// override still loads, and routes are then authenticated both ways.
func TestNATSRouteOverride(t *testing.T) {
	t.Setenv(jsKeyEnv, "an-encryption-key-for-the-check")
	dir := t.TempDir()
	for _, src := range glob(t, "nats/*.conf") {
		writeConf(t, dir, filepath.Base(src), string(readFile(t, src)))
	}
	example := string(readFile(t, "nats/cluster-routes.conf.example"))
	const password = "a-long-random-route-password"
	writeConf(t, dir, "cluster-routes.conf", strings.ReplaceAll(example, routePasswordPlaceholder, password))
	for _, f := range topLevelConfigs(t, dir) {
		opts, err := checkConfig(f)
		if err != nil {
			t.Errorf("nats-server -t -c %s with the route override: %v", filepath.Base(f), err)
			continue
		}
		if err := startupCheck(opts); err != nil {
			t.Errorf("%s with the route override: the server refuses its options: %v", filepath.Base(f), err)
		}
		if opts.Cluster.Username != "route" || opts.Cluster.Password != password {
			t.Errorf("%s: routes accepted with user %q and the password %v, want user route and the one filled in",
				filepath.Base(f), opts.Cluster.Username, opts.Cluster.Password == password)
		}
		var routes []string
		for _, u := range opts.Routes {
			pass, _ := u.User.Password()
			if u.User.Username() != "route" || pass != password {
				t.Errorf("%s: route %s does not authenticate as route with the password", filepath.Base(f), (&url.URL{Scheme: u.Scheme, Host: u.Host}).String())
			}
			routes = append(routes, u.Host)
		}
		if want := []string{"nats-1:6222", "nats-2:6222", "nats-3:6222"}; !slices.Equal(routes, want) {
			t.Errorf("%s: override routes %q, want %q", filepath.Base(f), routes, want)
		}
	}
	if n := strings.Count(example, routePasswordPlaceholder); n < 2 {
		t.Errorf("cluster-routes.conf.example names the password placeholder %d times, want the authorization and every route", n)
	}
}
