package auth_test

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/events/auth"
)

// now is the time every test judges requests at.
var now = time.Date(2026, 11, 25, 10, 1, 0, 0, time.UTC)

// secrets holds every seed and signature the tests make, so that checkErr can assert
// that none of them ever appears in an error.
var secrets struct {
	sync.Mutex
	list []string
}

func remember(s string) {
	secrets.Lock()
	defer secrets.Unlock()
	secrets.list = append(secrets.list, s)
}

// checkErr fails the test if err holds a seed or a signature made by the tests.
func checkErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	secrets.Lock()
	defer secrets.Unlock()
	for _, s := range secrets.list {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("error %q holds a secret", err)
		}
	}
}

// key is a generated nkey with its public key and seed.
type key struct {
	kp     nkeys.KeyPair
	public string
	seed   []byte
}

func newKey(t *testing.T, create func() (nkeys.KeyPair, error)) key {
	t.Helper()
	kp, err := create()
	if err != nil {
		t.Fatal(err)
	}
	public, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	remember(string(seed))
	return key{kp: kp, public: public, seed: seed}
}

// sign returns the headers of body signed by k.
func sign(t *testing.T, k key, body string) map[string][]string {
	t.Helper()
	signer, sig, err := auth.Sign(k.seed, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if signer != k.public {
		t.Fatalf("Sign returned signer %s, want %s", signer, k.public)
	}
	remember(sig)
	return map[string][]string{auth.HeaderSigner: {signer}, auth.HeaderSignature: {sig}}
}

// plain returns a plain request body with the given requested_at and extra fields.
func plain(requestedAt string, extra ...string) string {
	fields := []string{`"api_key_id":"a952bcbe-0d1f"`}
	if requestedAt != "" {
		fields = append(fields, `"requested_at":"`+requestedAt+`"`)
	}
	fields = append(fields, extra...)
	return "{" + strings.Join(fields, ",") + "}"
}

const (
	fresh = "2026-11-25T10:00:00Z" // a minute before now
	idInc = `"id":"inc-4711-1"`
)

// mangle changes one character in the middle of an nkey, so its checksum fails.
func mangle(s string) string {
	b := []byte(s)
	if b[20] == 'A' {
		b[20] = 'B'
	} else {
		b[20] = 'A'
	}
	return string(b)
}

func with(h map[string][]string, kv ...string) map[string][]string {
	out := make(map[string][]string, len(h)+len(kv)/2)
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = append(out[kv[i]], kv[i+1])
	}
	return out
}

func without(h map[string][]string, name string) map[string][]string {
	out := with(h)
	delete(out, name)
	return out
}

func binaryCE(id string) []string {
	return []string{"ce-specversion", "1.0", "ce-id", id, "ce-source", "incident-response", "ce-type", "revoker.key.revoke"}
}

func TestAuthorize(t *testing.T) {
	alice := newKey(t, nkeys.CreateUser)
	mallory := newKey(t, nkeys.CreateUser)
	account := newKey(t, nkeys.CreateAccount)

	valid := plain(fresh, idInc, `"source":"incident-response"`)
	validH := sign(t, alice, valid)

	signing := &auth.Policy{TrustedSigners: []string{mallory.public + "X", alice.public}}
	sources := &auth.Policy{AllowedSources: []string{"incident-response", "rotation"}}
	both := &auth.Policy{TrustedSigners: []string{alice.public}, AllowedSources: []string{"incident-response"}}
	short := &auth.Policy{TrustedSigners: []string{alice.public}, MaxAge: time.Minute, Skew: time.Second}

	type tc struct {
		name   string
		policy *auth.Policy
		header map[string][]string
		body   string
		req    func(*events.Request) // changes the decoded request, if set
		want   string                // the error text; "" for nil
	}
	cases := []tc{
		{name: "valid signed request", policy: signing, header: validH, body: valid},
		{name: "header names in any case", policy: signing, body: valid, header: map[string][]string{
			"revoker-signer": validH[auth.HeaderSigner], "REVOKER-SIGNATURE": validH[auth.HeaderSignature]}},
		{name: "padded signature", policy: signing, body: valid, header: map[string][]string{
			auth.HeaderSigner: validH[auth.HeaderSigner], auth.HeaderSignature: {validH[auth.HeaderSignature][0] + "=="}}},
		{name: "structured CloudEvent with id and time in the body", policy: signing,
			header: sign(t, alice, `{"specversion":"1.0","id":"ce-1","source":"ir","type":"t","time":"`+fresh+`","data":{"api_key_id":"k1"}}`),
			body:   `{"specversion":"1.0","id":"ce-1","source":"ir","type":"t","time":"` + fresh + `","data":{"api_key_id":"k1"}}`},
		{name: "binary CloudEvent with id and requested_at in the body", policy: signing,
			header: with(validH, binaryCE("ce-9")...), body: valid},
		{name: "binary CloudEvent with its id only in ce-id", policy: signing,
			header: with(sign(t, alice, plain(fresh)), binaryCE("ce-9")...), body: plain(fresh),
			want: "id must be in the signed body: the ce-id header is not covered by the signature"},
		{name: "binary CloudEvent with its time only in ce-time", policy: signing,
			header: with(sign(t, alice, plain("", idInc)), append(binaryCE("ce-9"), "ce-time", fresh)...), body: plain("", idInc),
			want: "requested_at must be in the signed body: the ce-time header is not covered by the signature"},

		{name: "unsigned", policy: signing, header: nil, body: valid,
			want: "request is not signed: no Revoker-Signer or Revoker-Signature header"},
		{name: "no signature", policy: signing, header: without(validH, auth.HeaderSignature), body: valid,
			want: "no Revoker-Signature header"},
		{name: "no signer", policy: signing, header: without(validH, auth.HeaderSigner), body: valid,
			want: "no Revoker-Signer header"},
		{name: "empty signature", policy: signing, body: valid,
			header: with(without(validH, auth.HeaderSignature), auth.HeaderSignature, " "),
			want:   "Revoker-Signature header is empty"},
		{name: "two signatures", policy: signing, body: valid,
			header: with(validH, "revoker-signature", validH[auth.HeaderSignature][0]),
			want:   "more than one Revoker-Signature header"},
		{name: "unknown signer", policy: signing, header: sign(t, mallory, valid), body: valid,
			want: "signer " + mallory.public + " is not trusted"},
		{name: "forged signature", policy: signing, body: valid, header: map[string][]string{
			auth.HeaderSigner: {alice.public}, auth.HeaderSignature: sign(t, mallory, valid)[auth.HeaderSignature]},
			want: "signature does not verify for signer " + alice.public},
		{name: "signature over a different body", policy: signing, header: validH,
			body: plain(fresh, `"id":"inc-4711-2"`, `"source":"incident-response"`),
			want: "signature does not verify for signer " + alice.public},
		{name: "body changed by white space", policy: signing, header: validH, body: valid + " ",
			want: "signature does not verify for signer " + alice.public},
		{name: "malformed base64", policy: signing, body: valid, header: map[string][]string{
			auth.HeaderSigner: {alice.public}, auth.HeaderSignature: {"not*base64!"}},
			want: "Revoker-Signature header is not base64url"},
		{name: "standard base64 alphabet", policy: signing, body: valid, header: map[string][]string{
			auth.HeaderSigner: {alice.public}, auth.HeaderSignature: {strings.Repeat("+/", 43)}},
			want: "Revoker-Signature header is not base64url"},
		{name: "short signature", policy: signing, body: valid, header: map[string][]string{
			auth.HeaderSigner: {alice.public}, auth.HeaderSignature: {base64.RawURLEncoding.EncodeToString([]byte("0123456789"))}},
			want: "Revoker-Signature header holds 10 bytes; an Ed25519 signature has 64"},
		{name: "signer is an account key", policy: signing, body: valid,
			header: with(without(validH, auth.HeaderSigner), auth.HeaderSigner, account.public),
			want:   "signer " + account.public + " is an account key; requests are signed with user keys (U...)"},
		{name: "signer header holds a seed", policy: signing, body: valid,
			header: with(without(validH, auth.HeaderSigner), auth.HeaderSigner, string(alice.seed)),
			want:   "Revoker-Signer header is not an nkey public key"},

		{name: "stale", policy: signing, header: sign(t, alice, plain("2026-11-25T09:49:00Z", idInc)),
			body: plain("2026-11-25T09:49:00Z", idInc),
			want: "requested_at 2026-11-25T09:49:00Z is 12m0s old; at most 5m0s is accepted"},
		{name: "just past max age", policy: signing, header: sign(t, alice, plain("2026-11-25T09:55:59.9996Z", idInc)),
			body: plain("2026-11-25T09:55:59.9996Z", idInc),
			want: "requested_at 2026-11-25T09:55:59.9996Z is 5m0.0004s old; at most 5m0s is accepted"},
		{name: "exactly max age", policy: signing, header: sign(t, alice, plain("2026-11-25T09:56:00Z", idInc)),
			body: plain("2026-11-25T09:56:00Z", idInc)},
		{name: "shorter max age", policy: short, header: sign(t, alice, plain("2026-11-25T09:59:59.5Z", idInc)),
			body: plain("2026-11-25T09:59:59.5Z", idInc),
			want: "requested_at 2026-11-25T09:59:59.5Z is 1m0.5s old; at most 1m0s is accepted"},
		{name: "future", policy: signing, header: sign(t, alice, plain("2026-11-25T10:02:00Z", idInc)),
			body: plain("2026-11-25T10:02:00Z", idInc),
			want: "requested_at 2026-11-25T10:02:00Z is 1m0s in the future; at most 30s of clock skew is accepted"},
		{name: "future within skew", policy: signing, header: sign(t, alice, plain("2026-11-25T10:01:30+00:00", idInc)),
			body: plain("2026-11-25T10:01:30+00:00", idInc)},
		{name: "future beyond a shorter skew", policy: short, header: sign(t, alice, plain("2026-11-25T11:01:02+01:00", idInc)),
			body: plain("2026-11-25T11:01:02+01:00", idInc),
			want: "requested_at 2026-11-25T10:01:02Z is 2s in the future; at most 1s of clock skew is accepted"},
		{name: "no requested_at", policy: signing, header: sign(t, alice, plain("", idInc)), body: plain("", idInc),
			want: "requested_at is required for signed requests"},
		{name: "no id, only Nats-Msg-Id", policy: signing, header: with(sign(t, alice, plain(fresh)), "Nats-Msg-Id", "m-1"),
			body: plain(fresh),
			want: "id is required for signed requests (a Nats-Msg-Id header or the stream sequence does not count)"},
		{name: "no id, only the stream sequence", policy: signing, header: sign(t, alice, plain(fresh)), body: plain(fresh),
			want: "id is required for signed requests (a Nats-Msg-Id header or the stream sequence does not count)"},
		{name: "request id not from this body", policy: signing, header: validH, body: valid,
			req:  func(r *events.Request) { r.ID = "other" },
			want: `request id "other" is not the id "inc-4711-1" in the signed body`},

		{name: "disallowed source", policy: sources, body: plain("", `"source":"evil"`),
			want: `source "evil" is not allowed`},
		{name: "allowed source", policy: sources, body: plain("", `"source":"rotation"`)},
		{name: "allowed source from ce-source", policy: sources, header: with(nil, binaryCE("ce-1")...), body: plain("")},
		{name: "no source", policy: sources, body: plain(""),
			want: "request has no source; only allowed sources may act"},
		{name: "sources match exactly", policy: sources, body: plain("", `"source":"Rotation"`),
			want: `source "Rotation" is not allowed`},
		{name: "long source is cut", policy: sources, body: plain("", `"source":"`+strings.Repeat("x", 100)+`"`),
			want: `source "` + strings.Repeat("x", 64) + `"... is not allowed`},
		{name: "signed, allowed source", policy: both, header: validH, body: valid},
		{name: "signed, disallowed source", policy: both,
			header: sign(t, alice, plain(fresh, idInc, `"source":"evil"`)), body: plain(fresh, idInc, `"source":"evil"`),
			want: `source "evil" is not allowed`},
		{name: "signed, source only in ce-source", policy: both,
			header: with(sign(t, alice, plain(fresh, idInc)), binaryCE("ce-1")...), body: plain(fresh, idInc),
			want: `source "incident-response" is in the ce-source header, which the signature does not cover; put source in the signed body`},
		{name: "signature checked before source", policy: both, header: nil, body: plain(fresh, idInc, `"source":"evil"`),
			want: "request is not signed: no Revoker-Signer or Revoker-Signature header"},

		{name: "everything off: unsigned", policy: &auth.Policy{}, body: plain("", `"source":"evil"`)},
		{name: "everything off: forged", policy: &auth.Policy{}, body: plain("2020-01-01T00:00:00Z"),
			header: map[string][]string{auth.HeaderSigner: {"junk"}, auth.HeaderSignature: {"***"}}},
		{name: "everything off but max age", policy: &auth.Policy{MaxAge: time.Second, Skew: time.Second},
			body: plain("2020-01-01T00:00:00Z")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := events.DecodeRequest(c.header, []byte(c.body), "KEY_REVOKE_REQUESTS-7")
			if err != nil {
				t.Fatalf("test request does not decode: %v", err)
			}
			if c.req != nil {
				c.req(&req)
			}
			p := *c.policy
			p.Now = func() time.Time { return now }
			for _, err := range []error{
				p.Authorize(c.header, []byte(c.body), req),
				c.policy.AuthorizeAt(c.header, []byte(c.body), req, now),
			} {
				checkErr(t, err)
				switch {
				case c.want == "" && err != nil:
					t.Fatalf("refused: %v", err)
				case c.want != "" && err == nil:
					t.Fatalf("authorized; want %q", c.want)
				case err != nil && err.Error() != c.want:
					t.Fatalf("error\n got %q\nwant %q", err, c.want)
				}
			}
		})
	}
}

func TestStaleError(t *testing.T) {
	alice := newKey(t, nkeys.CreateUser)
	body := plain("2026-11-25T09:00:00Z", idInc)
	h := sign(t, alice, body)
	req, err := events.DecodeRequest(h, []byte(body), "S-1")
	if err != nil {
		t.Fatal(err)
	}
	p := &auth.Policy{TrustedSigners: []string{alice.public}}
	err = p.AuthorizeAt(h, []byte(body), req, now)
	var stale *auth.StaleError
	if !errors.As(err, &stale) {
		t.Fatalf("error %v is not a *StaleError", err)
	}
	if stale.Age != time.Hour+time.Minute || stale.MaxAge != auth.DefaultMaxAge ||
		!stale.RequestedAt.Equal(now.Add(-stale.Age)) {
		t.Errorf("StaleError = %+v", *stale)
	}

	// A stale request whose signature does not verify is refused for its signature.
	err = p.AuthorizeAt(h, []byte(body+" "), req, now)
	if errors.As(err, &stale) {
		t.Errorf("unverified request gave a StaleError: %v", err)
	}
}

// The default clock is time.Now, and judging at the store time makes a request that
// waited in a backlog pass while a replay stored late is refused.
func TestClock(t *testing.T) {
	alice := newKey(t, nkeys.CreateUser)
	p := &auth.Policy{TrustedSigners: []string{alice.public}}
	requested := time.Now().Add(-time.Minute).UTC()
	body := plain(requested.Format(time.RFC3339Nano), idInc)
	h := sign(t, alice, body)
	req, err := events.DecodeRequest(h, []byte(body), "S-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Authorize(h, []byte(body), req); err != nil {
		t.Errorf("with the default clock: %v", err)
	}
	stored := requested.Add(time.Second)
	if err := p.AuthorizeAt(h, []byte(body), req, stored); err != nil {
		t.Errorf("stored a second after it was signed: %v", err)
	}
	if err := p.AuthorizeAt(h, []byte(body), req, requested.Add(2*time.Hour)); err == nil {
		t.Error("replay stored two hours later was authorized")
	}
}

func TestValidate(t *testing.T) {
	user := newKey(t, nkeys.CreateUser)
	account := newKey(t, nkeys.CreateAccount)
	cases := []struct {
		name   string
		policy auth.Policy
		want   []string // lines of the error, in order
	}{
		{name: "zero", policy: auth.Policy{}},
		{name: "full", policy: auth.Policy{TrustedSigners: []string{user.public}, MaxAge: 10 * time.Minute,
			Skew: time.Minute, AllowedSources: []string{"ir"}}},
		{name: "at the limit", policy: auth.Policy{MaxAge: auth.MaxAgeLimit - time.Minute, Skew: time.Minute}},
		{name: "seed", policy: auth.Policy{TrustedSigners: []string{user.public, string(user.seed)}},
			want: []string{"trusted signer #2 looks like an nkey seed: list public keys (U...) only, and treat that seed as leaked"}},
		{name: "seed with a space", policy: auth.Policy{TrustedSigners: []string{" " + string(user.seed)}},
			want: []string{"trusted signer #1 looks like an nkey seed: list public keys (U...) only, and treat that seed as leaked"}},
		{name: "account key", policy: auth.Policy{TrustedSigners: []string{account.public}},
			want: []string{"trusted signer " + account.public + " is an account key; want a user public key (U...)"}},
		{name: "typo", policy: auth.Policy{TrustedSigners: []string{mangle(user.public), ""}},
			want: []string{
				"trusted signer #1 is not a user public key (U... of 56 characters)",
				"trusted signer #2 is not a user public key (U... of 56 characters)"}},
		{name: "durations", policy: auth.Policy{MaxAge: -1, Skew: -time.Second},
			want: []string{"max request age -1ns is negative", "clock skew -1s is negative"}},
		{name: "too long", policy: auth.Policy{MaxAge: 30 * time.Minute},
			want: []string{"max request age 30m0s plus clock skew 30s is 30m30s; at most 30m0s keeps replays inside the results stream's duplicates window"}},
		{name: "empty source", policy: auth.Policy{AllowedSources: []string{"ir", " "}},
			want: []string{"allowed source #2 is empty"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.policy.Validate()
			checkErr(t, err)
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted; want %q", c.want)
			}
			if got, want := err.Error(), strings.Join(c.want, "\n"); got != want {
				t.Fatalf("Validate error\n got %q\nwant %q", got, want)
			}
		})
	}
}

func TestSign(t *testing.T) {
	user := newKey(t, nkeys.CreateUser)
	account := newKey(t, nkeys.CreateAccount)
	body := []byte(plain(fresh, idInc))

	signer, sig, err := auth.Sign(append(append([]byte{}, user.seed...), '\n'), body)
	if err != nil {
		t.Fatal(err)
	}
	remember(sig)
	if signer != user.public {
		t.Errorf("signer %s, want %s", signer, user.public)
	}
	if strings.ContainsAny(sig, "+/=") || len(sig) != 86 {
		t.Errorf("signature %d characters, not unpadded base64url", len(sig))
	}

	_, _, err = auth.Sign(account.seed, body)
	if want := "signer key is an account key; requests are signed with a user nkey (seed SU...)"; err == nil || err.Error() != want {
		t.Errorf("Sign with an account seed: %v; want %q", err, want)
	}
	checkErr(t, err)
	broken := mangle(string(user.seed))
	remember(broken)
	_, _, err = auth.Sign([]byte(broken), body)
	if want := "signer seed is not a valid nkey seed"; err == nil || err.Error() != want {
		t.Errorf("Sign with a broken seed: %v; want %q", err, want)
	}
	checkErr(t, err)
}

func TestLoadSeed(t *testing.T) {
	user := newKey(t, nkeys.CreateUser)
	account := newKey(t, nkeys.CreateAccount)
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	creds := "-----BEGIN NATS USER JWT-----\neyJhbGciOi.payload.sig\n------END NATS USER JWT------\n\n" +
		"************************* IMPORTANT *************************\n\n" +
		"-----BEGIN USER NKEY SEED-----\n" + string(user.seed) + "\n------END USER NKEY SEED------\n"

	good := map[string]string{
		"bare":     string(user.seed),
		"newline":  string(user.seed) + "\n",
		"crlf":     "\r\n  " + string(user.seed) + "\r\n",
		"comments": "# signer for ir-bot\n\n" + string(user.seed) + "\n",
		"creds":    creds,
	}
	for name, content := range good {
		t.Run(name, func(t *testing.T) {
			kp, err := auth.LoadSeed(write(name, content))
			checkErr(t, err)
			if err != nil {
				t.Fatal(err)
			}
			defer kp.Wipe()
			signer, sig, err := auth.SignWith(kp, []byte("x"))
			if err != nil {
				t.Fatal(err)
			}
			remember(sig)
			if signer != user.public {
				t.Fatalf("loaded %s, want %s", signer, user.public)
			}
		})
	}

	broken := mangle(string(user.seed))
	remember(broken)
	bad := map[string]struct{ content, want string }{
		"empty":        {"", "no nkey seed (SU...) found"},
		"public key":   {user.public + "\n", "no nkey seed (SU...) found"},
		"account seed": {string(account.seed) + "\n", "not a user nkey seed (SU...)"},
		"broken seed":  {broken + "\n", "not a valid nkey seed"},
	}
	for name, c := range bad {
		t.Run(name, func(t *testing.T) {
			path := write(name, c.content)
			_, err := auth.LoadSeed(path)
			checkErr(t, err)
			if want := "signer seed file " + path + ": " + c.want; err == nil || err.Error() != want {
				t.Fatalf("LoadSeed: %v; want %q", err, want)
			}
		})
	}
	_, err := auth.LoadSeed(filepath.Join(dir, "missing"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadSeed of a missing file: %v", err)
	}
}
