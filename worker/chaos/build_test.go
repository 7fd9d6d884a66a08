package chaos

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Binaries the test runs, built once per test binary and without -race:
// they are the processes under test, not the test.
var binaries struct {
	mu    sync.Mutex
	dir   string
	built map[string]string // package -> path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binaries.dir != "" {
		_ = os.RemoveAll(binaries.dir)
	}
	os.Exit(code)
}

func revokerBinary(t *testing.T) string { return buildBinary(t, "./cmd/revoker", "revoker") }

// natsServerBinary is nats-server from the module's dependency: its nodes
// run as processes so that SIGKILL takes one down with no hand-off.
func natsServerBinary(t *testing.T) string {
	return buildBinary(t, "github.com/nats-io/nats-server/v2", "nats-server")
}

func buildBinary(t *testing.T, pkg, name string) string {
	t.Helper()
	binaries.mu.Lock()
	defer binaries.mu.Unlock()
	if path, ok := binaries.built[pkg]; ok {
		return path
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		t.Fatalf("go env GOMOD: %q, %v", gomod, err)
	}
	if binaries.dir == "" {
		if binaries.dir, err = os.MkdirTemp("", "revoker-chaos-"); err != nil {
			t.Fatal(err)
		}
		binaries.built = make(map[string]string)
	}
	path := filepath.Join(binaries.dir, name)
	began := time.Now()
	cmd := exec.Command("go", "build", "-o", path, pkg)
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	t.Logf("built %s in %v", pkg, time.Since(began).Round(100*time.Millisecond))
	binaries.built[pkg] = path
	return path
}
