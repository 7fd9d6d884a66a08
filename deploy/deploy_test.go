// Package deploy_test checks the deployment files in this folder against the operator
// contract: the container image, the Kubernetes manifests, the systemd unit, the
// alerts and dashboard, and the NATS cluster configuration, which it loads into three
// embedded nats-servers to prove each user's permissions with real connections.
package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/revoker/revoker/worker/metrics"
)

// knownEnv is every environment variable `revoker run` reads, as its help names them
// ("[env NAME" after each flag, and the environment-only settings). A deployment file
// that sets anything else sets something revoker silently ignores.
func knownEnv(t *testing.T) map[string]bool {
	t.Helper()
	env, err := runEnv()
	if err != nil {
		t.Fatal(err)
	}
	return env
}

var runEnv = sync.OnceValues(func() (map[string]bool, error) {
	cmd := exec.Command("go", "run", "./cmd/revoker", "run", "-h")
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("revoker run -h: %v\n%s", err, out)
	}
	env := map[string]bool{}
	for _, m := range helpEnvRE.FindAllStringSubmatch(string(out), -1) {
		env[m[1]+m[2]] = true
	}
	for _, name := range []string{"NATS_URL", privateKeyEnv, "KALSHI_PRIVATE_KEY", httpAddrEnv} {
		if !env[name] {
			return nil, fmt.Errorf("revoker run -h does not name %s (help format changed?):\n%s", name, out)
		}
	}
	return env, nil
})

// helpEnvRE matches "[env NAME" and an environment-only "  NAME=VALUE (environment only)".
var helpEnvRE = regexp.MustCompile(`\[env ([A-Z][A-Z0-9_]*)|(?m)^\s+([A-Z][A-Z0-9_]*)=\S+ \(environment only\)`)

// knownMetrics are the series revoker exports: the worker's metrics, read
// from metrics.New itself, and cmd's build info. (Prometheus' own "up"
// is allowed where they are used.)
var knownMetrics = sync.OnceValue(func() map[string]bool {
	r := descNames{"revoker_build_info": true}
	metrics.New(r)
	return r
})

// descNames is a prometheus.Registerer that keeps the names of what is
// registered with it.
type descNames map[string]bool

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

func (n descNames) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqNameRE.FindStringSubmatch(d.String()); m != nil {
			n[m[1]] = true
		}
	}
	return nil
}

func (n descNames) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = n.Register(c)
	}
}

func (n descNames) Unregister(prometheus.Collector) bool { return false }

// Contract values the deployment files repeat.
const (
	httpPort         = "9464"
	requestsSubject  = "keys.revoke.requests"
	resultsSubject   = "keys.revoke.results"
	requestsStream   = "KEY_REVOKE_REQUESTS"
	resultsStream    = "KEY_REVOKE_RESULTS"
	consumerName     = "revoker"
	ledgerBucket     = "REVOKER_LEDGER"
	ledgerStream     = "KV_" + ledgerBucket        // the bucket's stream
	ledgerSubjects   = "$KV." + ledgerBucket + "." // prefix of the bucket's keys' subjects
	privateKeyEnv    = "KALSHI_PRIVATE_KEY_PATH"
	httpAddrEnv      = "REVOKER_HTTP_ADDR"
	noProvisionFlag  = "--no-provision"
	noProvisionEnv   = "REVOKER_NO_PROVISION"
	rateShareEnv     = "REVOKER_RATE_SHARE"
	jsKeyEnv         = "JS_KEY" // the nodes' JetStream encryption key (nats-common.conf)
	distrolessPrefix = "gcr.io/distroless/static"
)

// readFile returns the contents of a file in this folder, failing the test if absent.
func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(name))
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return b
}

// glob lists the files matching pattern (relative to this folder), sorted.
func glob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.FromSlash(pattern))
	if err != nil {
		t.Fatalf("glob %s: %v", pattern, err)
	}
	if len(m) == 0 {
		t.Fatalf("no files match %s", pattern)
	}
	sort.Strings(m)
	return m
}

var metricNameRE = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)

// metricsIn returns the known metric names a PromQL expression references, and the
// revoker_* names it references that are not known (typos, renamed series).
func metricsIn(expr string) (known, unknown []string) {
	for _, name := range metricNameRE.FindAllString(expr, -1) {
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && knownMetrics()[b] {
				base = b
			}
		}
		switch {
		case knownMetrics()[base] || base == "up":
			known = append(known, base)
		case strings.HasPrefix(base, "revoker_"):
			unknown = append(unknown, name)
		}
	}
	return known, unknown
}

func TestMetricsIn(t *testing.T) {
	known, unknown := metricsIn(`histogram_quantile(0.99, sum by (le) (rate(revoker_request_duration_seconds_bucket[5m]))) > up + revoker_typo_total`)
	if strings.Join(known, ",") != "revoker_request_duration_seconds,up" {
		t.Errorf("known = %q", known)
	}
	if strings.Join(unknown, ",") != "revoker_typo_total" {
		t.Errorf("unknown = %q", unknown)
	}
}

// yamlDocuments converts each non-empty document of a YAML stream to JSON the way
// kubectl reads manifests (sigs.k8s.io/yaml, YAML 1.1: 0400 is octal), rejecting
// duplicate keys.
func yamlDocuments(data []byte) ([][]byte, error) {
	var out [][]byte
	for _, doc := range yamlSeparatorRE.Split(string(data), -1) {
		j, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(j, []byte("null")) {
			out = append(out, j)
		}
	}
	return out, nil
}

var yamlSeparatorRE = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

func TestYAMLDocuments(t *testing.T) {
	docs, err := yamlDocuments([]byte("a: 0400\n---\n# second\nb: [x, 1]\n---\n"))
	if err != nil || len(docs) != 2 || string(docs[0]) != `{"a":256}` || string(docs[1]) != `{"b":["x",1]}` {
		t.Errorf("got %q, %v", docs, err)
	}
	for _, bad := range []string{"a: 1\na: 2", "a:\n\t- b", "a: b: c", `a: "open`} {
		if _, err := yamlDocuments([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
