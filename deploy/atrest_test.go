package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
	"github.com/revoker/revoker/worker/natstest"
)

// cipherRE matches the jetstream block's encryption settings in nats-common.conf.
var cipherRE = regexp.MustCompile(`(?m)^\s*(cipher|key):.*$`)

// TestLeakedKeyNotOnDiskInClear runs a request carrying a leaked private key through
// the shipped three-node cluster (R3 streams: the raft logs too), from the
// requester's publish to the worker's acknowledgement, stops the nodes and reads
// every file of their stores: no line of the PEM, nor its base64 body, is there. The
// same run with the cipher taken out of nats-common.conf finds the PEM, so the search
// can see it when it is there.
func TestLeakedKeyNotOnDiskInClear(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two clusters")
	}
	for _, tc := range []struct {
		name      string
		encrypted bool
	}{{"as shipped", true}, {"without the cipher", false}} {
		t.Run(tc.name, func(t *testing.T) {
			var edit func(name, conf string) string
			if !tc.encrypted {
				edit = func(name, conf string) string {
					if name != "nats-common.conf" {
						return conf
					}
					if n := len(cipherRE.FindAllString(conf, -1)); n != 2 {
						t.Fatalf("nats-common.conf has %d cipher and key lines, want 2", n)
					}
					return cipherRE.ReplaceAllString(conf, "")
				}
			}
			c := startNATSClusterWith(t, edit)
			pemLines := leakedKeyThroughCluster(t, c)

			// Stop the nodes together (each flushes its store), then read the stores.
			var wg sync.WaitGroup
			for _, s := range c.servers {
				wg.Go(s.Shutdown)
			}
			wg.Wait()
			needles := append(pemLines, strings.Join(pemLines[1:len(pemLines)-1], ""))
			found := map[string][]string{}
			files := 0
			err := filepath.WalkDir(c.dir, func(path string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() || !strings.Contains(path, string(filepath.Separator)+"jetstream-") {
					return err
				}
				data, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				files++
				// Named by position only: no key material in the test's output.
				for i, n := range needles {
					if bytes.Contains(data, []byte(n)) {
						rel, _ := filepath.Rel(c.dir, path)
						what := fmt.Sprintf("PEM line %d", i+1)
						if i == len(needles)-1 {
							what = "base64 body"
						}
						found[rel] = append(found[rel], what)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if files == 0 {
				t.Fatal("no store files to search")
			}
			switch {
			case tc.encrypted && len(found) > 0:
				t.Errorf("the leaked key rests in clear in %d of %d store files: %v", len(found), files, found)
			case !tc.encrypted && len(found) == 0:
				t.Errorf("without the cipher the PEM was not found in %d store files: the search is blind", files)
			}
		})
	}
}

// leakedKeyThroughCluster publishes a request carrying a fresh leaked PEM as the
// requester, pulls and acknowledges it as the worker (the work queue then drops it)
// and returns the PEM's lines.
func leakedKeyThroughCluster(t *testing.T, c *natsCluster) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, pemBytes := emulatortest.NewKeyPEM(t, emulatortest.PKCS1RSA)
	req, err := json.Marshal(map[string]string{"id": "inc-at-rest", "leaked_private_key": string(pemBytes)})
	if err != nil {
		t.Fatal(err)
	}
	requesterNC, _ := c.connect(t, userRequester)
	if _, err := newJetStream(t, requesterNC).Publish(ctx, requestsSubject, req, jetstream.WithMsgID("inc-at-rest")); err != nil {
		t.Fatalf("requester: publish: %v", err)
	}
	workerNC, _ := c.connect(t, userWorker)
	cons, err := newJetStream(t, workerNC).Consumer(ctx, requestsStream, consumerName)
	if err != nil {
		t.Fatalf("worker: consumer: %v", err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatalf("worker: fetch: %v", err)
	}
	n := 0
	for m := range batch.Messages() {
		n++
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatalf("worker: ack: %v", err)
		}
	}
	if n != 1 {
		t.Fatalf("worker: fetched %d requests (%v), want 1", n, batch.Error())
	}
	adminNC, _ := c.connect(t, userAdmin)
	adminJS := newJetStream(t, adminNC)
	natstest.WaitFor(t, 10*time.Second, "the request settled and gone from the work queue", func() bool {
		s, err := adminJS.Stream(ctx, requestsStream)
		return err == nil && s.CachedInfo().State.Msgs == 0
	})
	return strings.Split(strings.TrimSpace(string(pemBytes)), "\n")
}
