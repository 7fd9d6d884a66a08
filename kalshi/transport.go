package kalshi

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The signed headers. Their values never appear in errors or logs.
const (
	HeaderKey       = "KALSHI-ACCESS-KEY"
	HeaderTimestamp = "KALSHI-ACCESS-TIMESTAMP"
	HeaderSignature = "KALSHI-ACCESS-SIGNATURE"
)

// pssOptions is how Kalshi wants RSA signatures: PSS, SHA-256, salt 32.
var pssOptions = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}

// signError is a failure to sign; it is permanent and says nothing about
// the key.
type signError struct{ err error }

func (e *signError) Error() string { return "kalshi: sign request: " + e.err.Error() }
func (e *signError) Unwrap() error { return e.err }

// transport signs every request it forwards: a fresh timestamp and
// signature per attempt, so a retry is never stale.
type transport struct {
	keyID string
	key   crypto.Signer
	kind  keyKind
	base  http.RoundTripper
	now   func() time.Time
}

// RoundTrip implements http.RoundTripper. It does not modify req.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	ts := strconv.FormatInt(t.now().UnixMilli(), 10)
	sig, err := t.sign(ts, method, signedPath(req))
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Header[HeaderKey] = []string{t.keyID}
	r.Header[HeaderTimestamp] = []string{ts}
	r.Header[HeaderSignature] = []string{sig}
	return t.base.RoundTrip(r)
}

// signedPath is the path as it goes on the wire, without the query string.
func signedPath(req *http.Request) string {
	p, _, _ := strings.Cut(req.URL.RequestURI(), "?")
	return p
}

// sign returns the base64 signature of ts+method+path.
func (t *transport) sign(ts, method, path string) (string, error) {
	text := make([]byte, 0, len(ts)+len(method)+len(path))
	text = append(text, ts...)
	text = append(text, method...)
	text = append(text, path...)
	var (
		sig []byte
		err error
	)
	switch t.kind {
	case kindRSA:
		digest := sha256.Sum256(text)
		sig, err = t.key.Sign(rand.Reader, digest[:], pssOptions)
	case kindEd25519:
		sig, err = t.key.Sign(rand.Reader, text, crypto.Hash(0))
	default:
		err = fmt.Errorf("unsupported key kind %d", t.kind)
	}
	if err != nil {
		return "", &signError{err}
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}
