package worker_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/revoker/revoker/events/auth"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/provision"
)

// streamUse is what a stream holds: messages and bytes (as JetStream counts
// them: subject, headers, body and its own framing).
func (r *rig) streamUse(name string) (msgs, bytes uint64) {
	r.t.Helper()
	s, err := r.js.Stream(context.Background(), name)
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return info.State.Msgs, info.State.Bytes
}

// The storage each kind of request costs, measured, for the README's worst
// case (go test -run TestStorageFootprint -v ./worker/). The bounds are
// the documented ones: a rejection of junk is at most resultMaxMsgLen in
// its own stream and costs the results stream and the ledger nothing.
func TestStorageFootprint(t *testing.T) {
	r := newRig(t)
	const n = 100
	keys := r.addKeys(n)
	cfg, kp := r.signedConfig()
	cfg.ProtectedKeys = []string{keys[0]}
	r.start(cfg)
	text := strings.Repeat("x", 1<<10) // the most each free-text field may hold

	type step struct {
		name    string
		publish func(i int)
	}
	sign := func(id, key string, fields ...string) {
		body := map[string]string{"id": id, "api_key_id": key, "requested_at": time.Now().UTC().Format(time.RFC3339Nano)}
		for i := 0; i+1 < len(fields); i += 2 {
			body[fields[i]] = fields[i+1]
		}
		data, _ := json.Marshal(body)
		signer, sig, err := auth.SignWith(kp, data)
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg("keys.revoke.requests")
		m.Data = data
		m.Header.Set(auth.HeaderSigner, signer)
		m.Header.Set(auth.HeaderSignature, sig)
		r.publishMsg(m)
	}
	itoa := strconv.Itoa
	steps := []step{
		{"trusted, revoked", func(i int) { sign("rev-"+itoa(i), keys[i]) }},
		{"trusted, revoked, 3 KiB of free text", func(i int) {
			sign("revtext-"+itoa(i), r.addKeys(1)[0], "reason", text, "requested_by", text, "source", text)
		}},
		{"trusted, refused (protected key)", func(i int) { sign("prot-"+itoa(i), keys[0]) }},
		{"trusted, refused (protected key), 3 KiB of free text", func(i int) {
			sign("prottext-"+itoa(i), keys[0], "reason", text, "requested_by", text, "source", text)
		}},
		{"junk, undecodable", func(i int) { r.publishRaw("", []byte(`{"id":"j`+itoa(i)+`",`)) }},
		{"junk, unsigned, 3 KiB of free text", func(i int) {
			r.publishRaw("", []byte(`{"id":"u`+itoa(i)+`","api_key_id":"`+keys[1]+`","reason":"`+text+`","requested_by":"`+text+`","source":"`+text+`"}`))
		}},
	}
	for _, s := range steps {
		resM, resB := r.streamUse("KEY_REVOKE_RESULTS")
		untM, untB := r.streamUse(provision.UntrustedStream)
		ledM, ledB := r.streamUse("KV_" + ledger.Bucket)
		began := time.Now()
		for i := range n {
			s.publish(i)
		}
		r.waitQueueEmpty()
		took := time.Since(began)
		resM2, resB2 := r.streamUse("KEY_REVOKE_RESULTS")
		untM2, untB2 := r.streamUse(provision.UntrustedStream)
		ledM2, ledB2 := r.streamUse("KV_" + ledger.Bucket)
		t.Logf("%-52s results %5d B/request (%d msgs)  untrusted %5d B/request (%d msgs)  ledger %5d B/request (%d entries)  %4.0f requests/s",
			s.name, (resB2-resB)/n, resM2-resM, (untB2-untB)/n, untM2-untM, (ledB2-ledB)/n, ledM2-ledM, n/took.Seconds())
		// Issue 21 item 4: a request refused before any Kalshi call costs
		// the ledger at most 512 bytes, whatever free text it carries.
		if strings.Contains(s.name, "refused") {
			if per := (ledB2 - ledB) / n; per > 512 {
				t.Errorf("%s: %d ledger bytes a request, want at most 512", s.name, per)
			}
		}
		if strings.HasPrefix(s.name, "junk") {
			if resM2 != resM || ledM2 != ledM || untM2-untM != n {
				t.Errorf("%s: %d results, %d ledger entries, %d rejections; want only %d rejections", s.name, resM2-resM, ledM2-ledM, untM2-untM, n)
			}
			if per := (untB2 - untB) / n; per > 10<<10 {
				t.Errorf("%s: %d bytes a rejection, over the stream's 10 KiB messages", s.name, per)
			}
		}
	}
}
