package deployed_test

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

var flagStarts = flag.Int("deployed.starts", 7, "starts of BenchmarkDeployedStartToReady, per case")

// BenchmarkDeployedStartToReady measures, as deployed, the time from the
// exec of `revoker run` (default settings: REVOKER_RATE=auto,
// REVOKER_RATE_SHARE=auto; an RSA-2048 key) to the first 200 on /readyz,
// polled every 5 ms. The emulator answers at once on loopback, so Kalshi's
// round trip is left out. Three cases:
//
//   - provisioned: streams, consumer and buckets exist, and one request
//     waits in the stream;
//   - fresh: every start on a new nats-server with an empty store (up and
//     answering JetStream requests before the exec); revoker provisions,
//     and one request is published once it is ready;
//   - joiner: provisioned, and another replica already runs and spends the
//     whole budget; the joiner's share starts at zero.
//
// Besides readiness it reports the time to that one request's stored
// result (provisioned, fresh), and, from revoker's own log, when each step
// of the start was reached, in milliseconds after the exec: connected to
// NATS, serving /readyz, bound to the consumer, credential accepted, a
// share of the delete budget above zero.
//
//	go test -run '^$' -bench DeployedStartToReady -benchtime 1x -timeout 10m ./worker/deployed/
func BenchmarkDeployedStartToReady(b *testing.B) {
	for _, c := range []string{"provisioned", "fresh", "joiner"} {
		b.Run("case="+c, func(b *testing.B) { startToReady(b, c) })
	}
}

// startSteps are the log lines whose times startToReady reports, by a
// short name.
var startSteps = []struct{ name, msg string }{
	{"nats", "connected to NATS"},
	{"http", "serving /metrics, /healthz and /readyz"},
	{"bound", "bound to consumer"},
	{"cred", "kalshi accepted the credential; taking requests"},
	{"share", "delete budget share"},
}

func startToReady(b *testing.B, kind string) {
	key := writeKey(b, "rsa2048")
	w := newWorld(b, []signingKey{key}, -1, 0)
	if kind != "fresh" {
		// Provision, and for the joiner case keep that replica running with
		// the whole budget.
		first := w.startRevoker("first", key)
		if kind == "provisioned" {
			first.signal(syscall.SIGTERM)
		} else {
			waitShare(b, first, 1)
		}
	}
	var ready, firstResult []float64
	steps := map[string][]float64{}
	for i := range *flagStarts {
		if kind == "fresh" && i > 0 {
			w.nats.signal(syscall.SIGTERM)
			w.nc.Close()
			w.nats, w.natsURL, w.monURL = startNATS(b)
			w.connect()
		}
		var o *results
		stop := func() {}
		request := func() {
			keys := w.seed(1)
			o, stop = w.observe(1, nil)
			if err := w.publish(fmt.Sprintf("start%d", i), keys); err != nil {
				b.Fatal(err)
			}
		}
		if kind == "provisioned" {
			request()
		}
		rev := w.startRevoker(fmt.Sprintf("revoker-%d", i+1), key)
		began := rev.began
		line := fmt.Sprintf("start %d: ready in %.1f ms", i+1, ms(rev.readyIn))
		ready = append(ready, ms(rev.readyIn))
		if kind == "fresh" {
			request()
		}
		if o != nil {
			last := o.wait(b, 30*time.Second)
			firstResult = append(firstResult, ms(last.Sub(began)))
			line += fmt.Sprintf(", first result in %.1f ms", ms(last.Sub(began)))
		}
		stop()
		if kind == "joiner" {
			waitShare(b, rev, 0.5)
		}
		rev.signal(syscall.SIGTERM)
		at, warnings := logSteps(b, rev.log, began)
		if len(warnings) > 0 {
			line += fmt.Sprintf(" | %d warnings or errors in the log, the first: %s", len(warnings), warnings[0])
		}
		line += " | log, ms after exec:"
		for _, s := range startSteps {
			if t, ok := at[s.name]; ok {
				steps[s.name] = append(steps[s.name], t)
				line += fmt.Sprintf(" %s %.1f", s.name, t)
			}
		}
		b.Log(line)
		if kind == "joiner" {
			// The first replica takes the whole budget again; each start
			// comes at another phase of its beat (a second).
			time.Sleep(2*time.Second + time.Duration(i)*time.Second/time.Duration(*flagStarts))
		}
	}
	summary := fmt.Sprintf("MEDIAN start to ready, %s, %d starts: %.1f ms (min %.1f, max %.1f)", kind, len(ready), median(ready), slices.Min(ready), slices.Max(ready))
	if len(firstResult) > 0 {
		summary += fmt.Sprintf("; first result %.1f ms", median(firstResult))
	}
	summary += " | log, ms after exec:"
	for _, s := range startSteps {
		if len(steps[s.name]) > 0 {
			summary += fmt.Sprintf(" %s %.1f", s.name, median(steps[s.name]))
		}
	}
	b.Log(summary)
	b.ReportMetric(median(ready), "ready-ms")
	if len(firstResult) > 0 {
		b.ReportMetric(median(firstResult), "first-result-ms")
	}
	if len(steps["share"]) > 0 {
		b.ReportMetric(median(steps["share"]), "share-ms")
	}
	b.ReportMetric(0, "ns/op")
}

// waitShare waits until r's log says it spends share of the budget.
func waitShare(b *testing.B, r *revoker, share float64) {
	b.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		data, _ := os.ReadFile(r.log)
		for l := range strings.Lines(string(data)) {
			var e struct {
				Msg   string   `json:"msg"`
				Share *float64 `json:"share"`
			}
			if json.Unmarshal([]byte(l), &e) == nil && e.Msg == "delete budget share" && e.Share != nil && *e.Share > share-1e-9 && *e.Share < share+1e-9 {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: no share of %g within 15s", r.name, share)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// logSteps reads revoker's JSON log and returns, per step of startSteps,
// the milliseconds from began to its first line (for "share": the first
// share above zero), and the lines logged at WARN or ERROR.
func logSteps(b *testing.B, path string, began time.Time) (at map[string]float64, warnings []string) {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	at = map[string]float64{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		var l struct {
			Time  time.Time `json:"time"`
			Level string    `json:"level"`
			Msg   string    `json:"msg"`
			Share *float64  `json:"share"`
		}
		if json.Unmarshal(s.Bytes(), &l) != nil {
			continue
		}
		if l.Level == "WARN" || l.Level == "ERROR" {
			warnings = append(warnings, s.Text())
		}
		for _, st := range startSteps {
			if _, seen := at[st.name]; seen || !strings.HasPrefix(l.Msg, st.msg) {
				continue
			}
			if st.name == "share" && (l.Share == nil || *l.Share <= 0) {
				continue
			}
			at[st.name] = ms(l.Time.Sub(began))
		}
	}
	return at, warnings
}
