package deploy_test

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/budget"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/provision"
)

// kvCommand is the one `nats kv add BUCKET` command of deploy/README.md, split
// into words the way a shell splits it (double and single quotes, no expansions).
func kvCommand(t *testing.T, bucket string) []string {
	t.Helper()
	var found []string
	for _, line := range strings.Split(string(readFile(t, "README.md")), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "nats kv add "+bucket+" ") {
			if found != nil {
				t.Fatalf("README.md has more than one nats kv add command for %s", bucket)
			}
			found = shellWords(t, strings.TrimSpace(line))
		}
	}
	if found == nil {
		t.Fatalf("README.md has no nats kv add command for %s", bucket)
	}
	return found
}

func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var word strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; c {
		case ' ', '\t':
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		case '"', '\'':
			end := strings.IndexByte(line[i+1:], c)
			if end < 0 {
				t.Fatalf("unbalanced quote in %q", line)
			}
			word.WriteString(line[i+1 : i+1+end])
			i += 1 + end
			inWord = true
		case '\\', '$', '`':
			t.Fatalf("%q: the test reads only quoted and plain words", line)
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, word.String())
	}
	return words
}

var byteSizeRE = regexp.MustCompile(`^(\d+)([A-Za-z]*)$`)

// cliBytes parses a size as the nats CLI does: a plain number of bytes, or a
// number with K, KB, KiB, M, MB, MiB, G, GB, GiB, T, TB or TiB, all 1024-based.
func cliBytes(t *testing.T, s string) int64 {
	t.Helper()
	m := byteSizeRE.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("size %q", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		t.Fatalf("size %q: %v", s, err)
	}
	shift, ok := map[string]int{"": 0, "K": 10, "KB": 10, "KIB": 10, "M": 20, "MB": 20, "MIB": 20, "G": 30, "GB": 30, "GIB": 30, "T": 40, "TB": 40, "TIB": 40}[strings.ToUpper(m[2])]
	if !ok {
		t.Fatalf("size %q: unknown unit", s)
	}
	return n << shift
}

// ledgerConfig is the ledger bucket the documented command creates.
func ledgerConfig(t *testing.T) jetstream.KeyValueConfig { return kvConfig(t, ledgerBucket) }

// kvConfig is the bucket the documented command creates: the
// jetstream.KeyValueConfig that `nats kv add` builds from its flags and passes to
// CreateKeyValue, with the CLI's defaults (history 1, one replica, file storage).
func kvConfig(t *testing.T, bucket string) jetstream.KeyValueConfig {
	t.Helper()
	words := kvCommand(t, bucket)
	cfg := jetstream.KeyValueConfig{History: 1, Replicas: 1, Storage: jetstream.FileStorage}
	args := words[3:]
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			if cfg.Bucket != "" {
				t.Fatalf("nats kv add: a second bucket %q", a)
			}
			cfg.Bucket = a
			continue
		}
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok {
			if i+1 == len(args) {
				t.Fatalf("nats kv add: --%s without a value", name)
			}
			i++
			value = args[i]
		}
		switch name {
		case "description":
			cfg.Description = value
		case "history":
			n, err := strconv.ParseUint(value, 10, 8)
			if err != nil {
				t.Fatalf("--history %q: %v", value, err)
			}
			cfg.History = uint8(n)
		case "ttl":
			d, err := time.ParseDuration(value)
			if err != nil {
				t.Fatalf("--ttl %q: %v", value, err)
			}
			cfg.TTL = d
		case "replicas":
			n, err := strconv.Atoi(value)
			if err != nil {
				t.Fatalf("--replicas %q: %v", value, err)
			}
			cfg.Replicas = n
		case "marker-ttl": // per-message TTLs on, and how long the server's delete markers stay
			d, err := time.ParseDuration(value)
			if err != nil {
				t.Fatalf("--marker-ttl %q: %v", value, err)
			}
			cfg.LimitMarkerTTL = d
		case "max-value-size":
			cfg.MaxValueSize = int32(cliBytes(t, value))
		case "max-bucket-size":
			cfg.MaxBytes = cliBytes(t, value)
		case "storage":
			switch value {
			case "file", "f":
				cfg.Storage = jetstream.FileStorage
			case "memory", "m":
				cfg.Storage = jetstream.MemoryStorage
			default:
				t.Fatalf("--storage %q", value)
			}
		default:
			t.Fatalf("nats kv add --%s: not a flag this test models", name)
		}
	}
	return cfg
}

// TestLedgerCommandMatchesProvisioning holds the documented nats kv add command to
// exactly the bucket revoker run provisions (provision.LedgerConfig, default settings)
// at three replicas, and to what the ledger must hold.
func TestLedgerCommandMatchesProvisioning(t *testing.T) {
	got := ledgerConfig(t)
	want := provision.LedgerConfig(worker.Config{Replicas: 3}.Provisioning())
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Errorf("README.md's nats kv add differs from what revoker run provisions:\n got %s\nwant %s", g, w)
	}

	results := provision.ResultsStreamConfig(worker.Config{Replicas: 3}.Provisioning())
	// A request entry carries a decided result document (JSON in JSON).
	encodedResult := int32(events.MaxResultSize)
	checks := []struct {
		what string
		ok   bool
	}{
		{"the bucket is " + ledgerBucket, got.Bucket == ledgerBucket && ledger.Bucket == ledgerBucket},
		{"one revision per key (every change is a compare-and-set on it)", got.History == 1},
		{"entries outlast the results they record (TTL at least the results' max age)", got.TTL >= results.MaxAge},
		{"entries outlast the results duplicates window", got.TTL > results.Duplicates},
		{"an entry holds an encoded result document and its fields", got.MaxValueSize >= encodedResult+1<<10},
		{"the bucket is bounded in bytes", got.MaxBytes > 0},
		{"file-backed with 3 replicas", got.Storage == jetstream.FileStorage && got.Replicas == 3},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("contract: %s: not so", c.what)
		}
	}
}

// TestReplicasCommandMatchesProvisioning holds the documented nats kv add command of
// the replica plan (REVOKER_RATE_SHARE=auto) to what revoker run provisions.
func TestReplicasCommandMatchesProvisioning(t *testing.T) {
	got, want := kvConfig(t, budget.ReplicasBucket), provision.ReplicasConfig(worker.Config{Replicas: 3}.Provisioning())
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Errorf("README.md's nats kv add differs from what revoker run provisions:\n got %s\nwant %s", g, w)
	}
}

// TestProvisioningDocsNameTheLedger: every deployment that binds with
// --no-provision says what must be provisioned first, the ledger included.
func TestProvisioningDocsNameTheLedger(t *testing.T) {
	for _, f := range []string{"kubernetes/deployment.yaml", "kubernetes/configmap.yaml", "systemd/revoker.service", "README.md"} {
		if !strings.Contains(string(readFile(t, f)), ledgerBucket) {
			t.Errorf("%s says what to provision but not the ledger bucket %s", f, ledgerBucket)
		}
	}
}

// TestProvisioningDocsCreateEverything: the manual set-up of deploy/README.md (and of
// docs/operations.md, which repeats it) creates every
// stream and consumer file of nats/ and both buckets run binds to with
// REVOKER_NO_PROVISION (run refuses to start without any of them).
func TestProvisioningDocsCreateEverything(t *testing.T) {
	deployDoc := string(readFile(t, "README.md"))
	// docs/operations.md's manual set-up repeats deploy/README.md's.
	for name, readme := range map[string]string{"deploy/README.md": deployDoc, "docs/operations.md": string(readFile(t, "../docs/operations.md"))} {
		for _, f := range glob(t, "nats/streams/*.json") {
			if cmd := "nats stream add --config deploy/" + filepath.ToSlash(f); !strings.Contains(readme, cmd) {
				t.Errorf("%s lacks %q", name, cmd)
			}
		}
		for _, f := range glob(t, "nats/consumers/*.json") {
			if cmd := "--config deploy/" + filepath.ToSlash(f); !strings.Contains(readme, cmd) {
				t.Errorf("%s creates no consumer %s", name, cmd)
			}
		}
		for _, line := range strings.Split(deployDoc, "\n") {
			if strings.HasPrefix(line, "nats kv add ") && !strings.Contains(readme, line) {
				t.Errorf("%s lacks %q", name, line)
			}
		}
	}
	for _, bucket := range []string{ledger.Bucket, budget.ReplicasBucket} {
		kvCommand(t, bucket) // fails the test when there is none
	}
}
