package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// pemBody is a PEM-looking private key whose lines a test can search for.
const pemBody = "-----BEGIN RSA PRIVATE KEY-----\nMIIEsecretLINEone\nMIIEsecretLINEtwo\n-----END RSA PRIVATE KEY-----\n"

func leakedJSON(t *testing.T, fields map[string]any) string {
	t.Helper()
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDecodeLeakedKey(t *testing.T) {
	for _, tc := range []struct {
		name     string
		body     string
		wantKey  string // APIKeyID
		wantPEM  bool
		problems []string
	}{
		{name: "leaked key alone", body: leakedJSON(t, map[string]any{"id": "x", "leaked_private_key": pemBody}), wantPEM: true},
		{name: "with a hint, canonical", body: leakedJSON(t, map[string]any{"leaked_private_key": pemBody, "api_key_id": "ABC-def"}),
			wantKey: "abc-def", wantPEM: true},
		{name: "inside CloudEvents data", body: leakedJSON(t, map[string]any{"specversion": "1.0", "id": "ce", "source": "s", "type": "t",
			"data": map[string]any{"leaked_private_key": pemBody}}), wantPEM: true},
		{name: "neither key nor PEM", body: `{"reason":"r"}`, problems: []string{"api_key_id is required (or leaked_private_key)"}},
		{name: "PEM null", body: `{"leaked_private_key":null}`, problems: []string{"api_key_id is required"}},
		{name: "PEM a number", body: `{"leaked_private_key":1}`, problems: []string{"leaked_private_key must be a string, not a number"}},
		{name: "not a PEM", body: `{"leaked_private_key":"MIIEsecretLINEone"}`, problems: []string{"leaked_private_key is not a PEM private key"}},
		{name: "too long", body: leakedJSON(t, map[string]any{"leaked_private_key": pemBody + strings.Repeat("MIIEsecretLINEone\n", 1000)}),
			problems: []string{"leaked_private_key is 18098 bytes; at most 16384"}},
		{name: "bad hint", body: leakedJSON(t, map[string]any{"leaked_private_key": pemBody, "api_key_id": "a/b"}),
			problems: []string{`api_key_id "a/b" has characters outside`}},
		{name: "empty hint", body: leakedJSON(t, map[string]any{"leaked_private_key": pemBody, "api_key_id": ""}),
			problems: []string{"api_key_id is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := DecodeRequest(nil, []byte(tc.body), fallback)
			if tc.problems == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if req.APIKeyID != tc.wantKey || req.LeakedKey.IsZero() == tc.wantPEM {
					t.Errorf("APIKeyID %q, leaked key present %v; want %q, %v", req.APIKeyID, !req.LeakedKey.IsZero(), tc.wantKey, tc.wantPEM)
				}
				if tc.wantPEM && string(req.LeakedKey.PEM()) != pemBody {
					t.Error("PEM() is not the PEM received")
				}
				return
			}
			if err == nil {
				t.Fatal("err = nil, want a rejection")
			}
			for _, p := range tc.problems {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("err = %q, want it to contain %q", err, p)
				}
			}
			if strings.Contains(err.Error(), "secretLINE") {
				t.Errorf("the error quotes the PEM: %q", err)
			}
		})
	}
}

// No way of printing a request shows its leaked key.
func TestLeakedKeyNeverPrinted(t *testing.T) {
	req, err := DecodeRequest(nil, []byte(leakedJSON(t, map[string]any{"leaked_private_key": pemBody})), fallback)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		fmt.Fprintf(&out, verb+"\n", req)
		fmt.Fprintf(&out, verb+"\n", req.LeakedKey)
	}
	logger := slog.New(slog.NewJSONHandler(&out, nil))
	logger.Info("request", "req", req, "key", req.LeakedKey)
	slog.New(slog.NewTextHandler(&out, nil)).Info("request", "req", req, "key", req.LeakedKey)
	b, _ := json.Marshal(req)
	out.Write(b)
	for _, line := range strings.Split(strings.TrimSpace(pemBody), "\n") {
		if bytes.Contains(out.Bytes(), []byte(line)) || bytes.Contains(out.Bytes(), []byte(fmt.Sprintf("%x", line))) {
			t.Fatalf("a line of the PEM was printed:\n%s", out.String())
		}
	}
	if !bytes.Contains(out.Bytes(), []byte("[REDACTED]")) {
		t.Fatalf("the key is not shown as [REDACTED]:\n%s", out.String())
	}
}
