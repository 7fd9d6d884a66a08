package leaked

import (
	"crypto"
	"log/slog"
	"strings"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
)

// Key is the private key a request carries so that revoker finds the API
// key it belongs to. Only its fingerprint is ever written anywhere:
// printed or logged, it shows that alone.
type Key struct {
	signer      crypto.Signer
	fingerprint string
}

func (k *Key) String() string       { return "leaked key " + k.fingerprint }
func (k *Key) GoString() string     { return k.String() }
func (k *Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Signer signs as the leaked key.
func (k *Key) Signer() crypto.Signer { return k.signer }

// Fingerprint is the key's fingerprint (kalshi.Fingerprint), the only part
// of it that is ever written.
func (k *Key) Fingerprint() string { return k.fingerprint }

// Parse parses a request's leaked key; a key that does not parse makes the
// request invalid. The error never holds the PEM.
func Parse(k events.LeakedKey) (*Key, error) {
	signer, err := kalshi.ParsePrivateKey(k.PEM())
	if err != nil {
		return nil, &events.InvalidRequestError{Reason: "leaked_private_key: " + strings.TrimPrefix(err.Error(), "private key: ")}
	}
	fp, err := kalshi.Fingerprint(signer)
	if err != nil {
		return nil, &events.InvalidRequestError{Reason: "leaked_private_key: " + err.Error()}
	}
	return &Key{signer: signer, fingerprint: fp}, nil
}
