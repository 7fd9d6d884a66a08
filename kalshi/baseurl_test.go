package kalshi

import (
	"errors"
	"strings"
	"testing"
)

func TestResolveBaseURL(t *testing.T) {
	for _, tt := range []struct{ in, want, err string }{
		{"", "https://external-api.kalshi.com/trade-api/v2", ""},
		{"prod", "https://external-api.kalshi.com/trade-api/v2", ""},
		{"prod", ProdBaseURL, ""},
		{" PROD ", ProdBaseURL, ""},
		{"demo", DemoBaseURL, ""},
		{"Demo", DemoBaseURL, ""},
		{"http://127.0.0.1:8080/trade-api/v2/", "http://127.0.0.1:8080/trade-api/v2", ""},
		{"https://external-api.kalshi.com/trade-api/v2", "https://external-api.kalshi.com/trade-api/v2", ""},
		// The production host Kalshi documented before still works.
		{LegacyProdBaseURL, "https://api.elections.kalshi.com/trade-api/v2", ""},
		{"https://api.elections.kalshi.com/trade-api/v2/", "https://api.elections.kalshi.com/trade-api/v2", ""},
		{"ftp://example.com", "", "want prod, demo or an http(s) URL"},
		{"staging", "", "want prod, demo or an http(s) URL"},
		{"https://", "", "missing host"},
		{"https://x/trade-api/v2?a=b", "", "query or fragment"},
		{"https://user:hunter2@x/trade-api/v2", "", "credentials"},
		{"https://user:hunter2@x:bad/", "", "base url"},
		// Plain http only to loopback: anywhere else it carries signed requests in clear.
		{"http://localhost:8080/trade-api/v2", "http://localhost:8080/trade-api/v2", ""},
		{"http://LocalHost/trade-api/v2", "http://LocalHost/trade-api/v2", ""},
		{"http://127.9.9.9/trade-api/v2", "http://127.9.9.9/trade-api/v2", ""},
		{"http://[::1]:8080/trade-api/v2", "http://[::1]:8080/trade-api/v2", ""},
		{"http://api.elections.kalshi.com/trade-api/v2", "", "plain http is allowed only to a loopback host"},
		{"HTTP://10.0.0.1/trade-api/v2", "", "plain http"},
		{"http://127.0.0.1.example.com/", "", "plain http"},
		{"http://localhost.example.com/", "", "plain http"},
		{"http://[::2]/", "", "plain http"},
		{"http://0.0.0.0:8080/", "", "plain http"},
	} {
		got, err := ResolveBaseURL(tt.in)
		if got != tt.want || (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("ResolveBaseURL(%q) = %q, %v; want %q, %q", tt.in, got, err, tt.want, tt.err)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ResolveBaseURL(%q) error %q shows the password", tt.in, err)
		}
	}
}

func TestValidKeyID(t *testing.T) {
	for _, tt := range []struct {
		id   string
		want bool
	}{
		{"a952bcbe-ec3b-4b5b-b8f9-11dae589608c", true},
		{"A_z-09", true},
		{"x", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"", false},
		{"../account", false},
		{"a/b", false},
		{"a?b=c", false},
		{"a%2Fb", false},
		{"a b", false},
		{"a\nb", false},
		{"ä", false},
		{"a.b", false},
	} {
		if got := ValidKeyID(tt.id); got != tt.want {
			t.Errorf("ValidKeyID(%q) = %v", tt.id, got)
		}
	}
	if !errors.Is(ErrInvalidKeyID, ErrInvalidKeyID) || !strings.Contains(ErrInvalidKeyID.Error(), "128") {
		t.Fatal(ErrInvalidKeyID)
	}
}
