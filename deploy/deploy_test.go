// Package deploy_test checks the deployment files in this folder against the operator
// contract: the container image, the Kubernetes manifests, the systemd unit, the
// alerts and dashboard, and the NATS cluster configuration, which it loads into three
// embedded nats-servers to prove each user's permissions with real connections.
package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// knownEnv is every environment variable revoker reads (design.md, "Contract:
// configuration", plus REVOKER_STREAM_REPLICAS from the provisioning plan). A
// deployment file that sets anything else sets something revoker silently ignores.
var knownEnv = map[string]bool{
	"NATS_URL":                  true,
	"NATS_CREDS":                true,
	"NATS_NKEY_SEED":            true,
	"NATS_TLS_CA":               true,
	"NATS_TLS_CERT":             true,
	"NATS_TLS_KEY":              true,
	"KALSHI_BASE_URL":           true,
	"KALSHI_API_KEY_ID":         true,
	"KALSHI_PRIVATE_KEY_PATH":   true,
	"KALSHI_PRIVATE_KEY":        true,
	"REVOKER_REQUESTS_SUBJECT":  true,
	"REVOKER_RESULTS_SUBJECT":   true,
	"REVOKER_REQUESTS_STREAM":   true,
	"REVOKER_RESULTS_STREAM":    true,
	"REVOKER_CONSUMER":          true,
	"REVOKER_CONCURRENCY":       true,
	"REVOKER_RATE":              true,
	"REVOKER_MAX_RETRY":         true,
	"REVOKER_ATTEMPT_TIMEOUT":   true,
	"REVOKER_HTTP_ADDR":         true,
	"REVOKER_LOG_FORMAT":        true,
	"REVOKER_LOG_LEVEL":         true,
	"REVOKER_ALLOW_SELF_REVOKE": true,
	"REVOKER_PROTECTED_KEYS":    true,
	"REVOKER_RATE_SHARE":        true,
	"REVOKER_TRUSTED_SIGNERS":   true,
	"REVOKER_MAX_REQUEST_AGE":   true,
	"REVOKER_ALLOWED_SOURCES":   true,
	"REVOKER_SIGNER_SEED":       true,
	"REVOKER_STREAM_REPLICAS":   true,
}

// knownMetrics are the series revoker exports (API.md, "Metrics"), plus Prometheus'
// own "up" for the target-down alert.
var knownMetrics = map[string]bool{
	"revoker_results_total":                true,
	"revoker_attempts_total":               true,
	"revoker_retries_total":                true,
	"revoker_in_flight":                    true,
	"revoker_request_duration_seconds":     true,
	"revoker_ready":                        true,
	"revoker_consumer_pending":             true,
	"revoker_rate_limit_tokens_per_second": true,
}

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
			if b, ok := strings.CutSuffix(name, suffix); ok && knownMetrics[b] {
				base = b
			}
		}
		switch {
		case knownMetrics[base] || base == "up":
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
