package chaos

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/kalshi/emulator"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
)

// senders knows which replica sent each Kalshi call: every replica's
// Kalshi link ends at a front of its own, which notes the call's signing
// time and path and hands it to the one emulator. The judge then names the
// replica that broke an invariant (the emulator sees one credential).
type senders struct {
	mu   sync.Mutex
	sent []sentCall
}

type sentCall struct {
	signedMS int64
	method   string
	path     string
	replica  string
}

// front serves h for replica on a listener of its own and returns its
// address.
func (s *senders) front(t *testing.T, replica string, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ms, err := strconv.ParseInt(r.Header.Get("KALSHI-ACCESS-TIMESTAMP"), 10, 64); err == nil {
			s.mu.Lock()
			s.sent = append(s.sent, sentCall{signedMS: ms, method: r.Method, path: strings.ToLower(r.URL.Path), replica: replica})
			s.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("%s's Kalshi front: %v", replica, err)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// of names the replica that sent c, or "a replica" when the signing time
// and path do not tell.
func (s *senders) of(c emulator.Call) string {
	if s == nil || c.Signed.IsZero() {
		return "a replica"
	}
	method, _, _ := strings.Cut(c.Endpoint, " ")
	s.mu.Lock()
	defer s.mu.Unlock()
	found := ""
	for _, sc := range s.sent {
		if sc.signedMS != c.Signed.UnixMilli() || sc.method != method || c.KeyID != "" && !strings.HasSuffix(sc.path, "/"+c.KeyID) {
			continue
		}
		if found != "" && found != sc.replica {
			return "a replica"
		}
		found = sc.replica
	}
	if found == "" {
		return "a replica"
	}
	return found
}

// TestSendersNameTheReplica: a DELETE signed and sent through one replica's
// front is named as that replica's, not the other's.
func TestSendersNameTheReplica(t *testing.T) {
	emu := emulator.New(emulator.Options{})
	key := emulatortest.Key()
	self := emu.AddKey("self", &key.PublicKey, "read", "write")
	victim := emu.AddKey("victim", &emulatortest.Key().PublicKey, "read")
	s := &senders{}
	s.front(t, "replica-1", emu)
	addr := s.front(t, "replica-2", emu)
	c, err := kalshi.New(kalshi.Config{BaseURL: "http://" + addr + emulator.BasePath, KeyID: self, PrivateKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteAPIKey(t.Context(), victim); err != nil {
		t.Fatal(err)
	}
	calls := emu.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d calls, want 1", len(calls))
	}
	if got := s.of(calls[0]); got != "replica-2" {
		t.Fatalf("sent by %q, want replica-2", got)
	}
}
