package leaked

import (
	"bytes"
	"crypto/rsa"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi/emulator/emulatortest"
)

// A parsed leaked key prints as its fingerprint alone, however it is
// printed: never a number of the private key.
func TestLeakedKeyPrintsOnlyItsFingerprint(t *testing.T) {
	_, p := emulatortest.NewKeyPEM(t, emulatortest.PKCS1RSA)
	lk, err := Parse(events.NewLeakedKey(string(p)))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		fmt.Fprintf(&out, verb+"\n", lk)
	}
	slog.New(slog.NewJSONHandler(&out, nil)).Info("x", "lk", lk)
	slog.New(slog.NewTextHandler(&out, nil)).Info("x", "lk", lk)
	priv := lk.signer.(*rsa.PrivateKey)
	for _, secret := range []string{priv.D.String(), priv.D.Text(16), priv.Primes[0].String()} {
		if strings.Contains(out.String(), secret[:24]) {
			t.Fatalf("a private number was printed:\n%s", out.String())
		}
	}
	if strings.Count(out.String(), lk.fingerprint) != 6 {
		t.Errorf("not every form names the fingerprint:\n%s", out.String())
	}
}
