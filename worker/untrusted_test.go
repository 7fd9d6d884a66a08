package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/provision"
)

// Issue 21 item 5: junk cannot evict the audit log. With both streams
// shrunk to a few dozen results, a flood of untrusted requests of every
// kind (undecodable, unsigned, an id already naming another key) fills
// only the untrusted stream, each rejection on its code's subject, and
// the trusted results stay. On the old main the flood rolled them out.
func TestUntrustedFloodKeepsTrustedResults(t *testing.T) {
	r := newRig(t)
	keys := r.addKeys(3)
	cfg, kp := r.signedConfig()
	ctx := context.Background()
	if err := provision.Ensure(ctx, r.js, cfg.Provisioning()); err != nil {
		t.Fatal(err)
	}
	for _, sc := range []jetstream.StreamConfig{provision.ResultsStreamConfig(cfg.Provisioning()), provision.UntrustedStreamConfig(cfg.Provisioning())} {
		sc.MaxBytes = 32 << 10 // about 40 results
		if _, err := r.js.UpdateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	r.start(cfg)
	r.publishMsg(signedRequest(t, kp, "inc-1", keys[0], time.Now()))
	r.publishMsg(signedRequest(t, kp, "inc-2", keys[1], time.Now()))
	r.waitQueueEmpty()

	const junk = 150 // about 100 KB of rejections: three times either stream
	for i := range junk {
		switch i % 3 {
		case 0:
			r.publishRaw("", []byte(`{"id":"inc-1","api_key_id":`))
		case 1:
			r.publishRaw("", []byte(`{"id":"inc-1","api_key_id":"`+keys[2]+`"}`)) // unsigned
		default:
			r.publishMsg(signedRequest(t, kp, "inc-2", keys[2], time.Now())) // inc-2 names keys[1]
		}
	}
	r.waitQueueEmpty()

	trusted := r.storedIn("KEY_REVOKE_RESULTS", func(res events.Result) string {
		return events.ResultSubject("keys.revoke.results", res.Outcome)
	})
	ids := map[string]bool{}
	for _, s := range trusted {
		ids[s.RequestID] = s.Outcome == events.Revoked
	}
	if len(trusted) != 2 || !ids["inc-1"] || !ids["inc-2"] {
		t.Errorf("the results stream holds %d results, want the two trusted ones: %+v", len(trusted), trusted)
	}
	codes := map[events.Code]int{}
	for _, s := range r.stored()[len(trusted):] { // stored checks each subject and id
		codes[s.Error.Code]++
	}
	for _, c := range []events.Code{events.CodeInvalidRequest, events.CodeUnauthorizedRequest, events.CodeConflictingRequestID} {
		if codes[c] == 0 {
			t.Errorf("no %s rejection kept in %s: %v", c, provision.UntrustedStream, codes)
		}
	}
	s, err := r.js.Stream(ctx, provision.UntrustedStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != junk || info.State.FirstSeq == 1 {
		t.Errorf("%s: sequences %d..%d, want %d rejections stored and the oldest dropped", provision.UntrustedStream, info.State.FirstSeq, info.State.LastSeq, junk)
	}
	if !r.emu.HasKey(keys[2]) || r.emu.HasKey(keys[0]) || r.emu.HasKey(keys[1]) {
		t.Error("a junk request touched a key, or a trusted one did not")
	}
}
