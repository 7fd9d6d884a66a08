package worker_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/natstest"
)

// A publisher learns each request's sequence from its PubAck, so it knows the
// fallback id of the next request that names none. A request claiming it (for
// the worker's own key, which costs no Kalshi call) is refused as invalid, and
// the id-less request that follows, for a live leaked key, revokes it.
func TestFallbackIDCannotBeSquatted(t *testing.T) {
	r := newRig(t)
	ids, pems := r.leakedKeys(1)
	r.start(r.config())
	ctx := context.Background()
	s, err := r.js.Stream(ctx, "KEY_REVOKE_REQUESTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := events.FallbackID("KEY_REVOKE_REQUESTS", info.State.LastSeq+2)
	squat, _ := json.Marshal(map[string]string{"id": next, "api_key_id": r.selfID})
	r.publishRaw("", squat)
	var squatter events.Result
	natstest.WaitFor(t, 20*time.Second, "the squatting request's result", func() bool {
		all := r.results()
		if len(all) == 1 {
			squatter = all[0]
		}
		return len(all) > 0
	})
	if squatter.Outcome != events.Rejected || squatter.Error == nil || squatter.Error.Code != events.CodeInvalidRequest ||
		!strings.Contains(squatter.Error.Message, "reserves for requests without an id") {
		t.Errorf("squatting request: %s %+v, want rejected/invalid_request naming the reserved form", squatter.Outcome, squatter.Error)
	}
	if squatter.RequestID == next {
		t.Errorf("the squatting request's result holds the squatted id %s", next)
	}

	leaked, _ := json.Marshal(map[string]string{"leaked_private_key": string(pems[0])})
	r.publishRaw("", leaked)
	var got events.Result
	natstest.WaitFor(t, 20*time.Second, "the id-less request's result", func() bool {
		for _, res := range r.results() {
			if res.RequestID == next {
				got = res
				return true
			}
		}
		return false
	})
	if got.Outcome != events.Revoked || got.APIKeyID != ids[0] {
		t.Errorf("id-less request %s: %s %s %+v, want revoked %s", next, got.Outcome, got.APIKeyID, got.Error, ids[0])
	}
	if r.emu.HasKey(ids[0]) {
		t.Error("the leaked key is still live")
	}
}
