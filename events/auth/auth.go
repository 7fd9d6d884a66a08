package auth

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/events"
)

// The headers a signed request carries. Names match in any case.
const (
	HeaderSigner    = "Revoker-Signer"    // the signer's public user nkey (U...)
	HeaderSignature = "Revoker-Signature" // Ed25519 signature over the body, base64url
)

// Defaults and limits of a [Policy].
const (
	DefaultMaxAge = 5 * time.Minute  // Policy.MaxAge when zero
	DefaultSkew   = 30 * time.Second // Policy.Skew when zero
	// MaxAgeLimit bounds MaxAge plus Skew. Every copy of a signed request that the
	// policy lets act is stored within that span, which must fit with room to spare
	// in the results stream's duplicates window less the retry budget (one hour), so
	// that copies yield one result; see "Replays" in the package documentation.
	MaxAgeLimit = 30 * time.Minute
)

// Policy is the request-authentication policy. Its zero value accepts every request; a
// Policy must not be changed once in use, and is then safe for concurrent use.
type Policy struct {
	// TrustedSigners are the NATS user public nkeys (U...) whose signatures make a
	// request act. Empty (the default): signatures are not required and not checked.
	TrustedSigners []string
	// MaxAge is how old a signed request's requested_at may be; default
	// DefaultMaxAge. Unused without TrustedSigners.
	MaxAge time.Duration
	// Skew is how far a signed request's requested_at may lie in the future, to
	// allow for clocks that differ; default DefaultSkew. Unused without TrustedSigners.
	Skew time.Duration
	// AllowedSources, when not empty, are the only request sources that act,
	// matched exactly. Empty (the default): any source, or none.
	AllowedSources []string
	// Now is the clock Authorize measures a request's age with; default time.Now.
	Now func() time.Time
}

func (p *Policy) maxAge() time.Duration {
	if p.MaxAge > 0 {
		return p.MaxAge
	}
	return DefaultMaxAge
}

func (p *Policy) skew() time.Duration {
	if p.Skew > 0 {
		return p.Skew
	}
	return DefaultSkew
}

func (p *Policy) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Validate reports every problem of the policy's settings at once: a trusted signer that
// is not a user public key, a negative duration, MaxAge plus Skew beyond MaxAgeLimit,
// an empty allowed source. A trusted signer is named by its position only, unless it is
// a valid public key, so that a seed pasted by mistake never reaches a log.
func (p *Policy) Validate() error {
	var errs []error
	for i, s := range p.TrustedSigners {
		n := i + 1
		switch {
		case nkeys.IsValidPublicUserKey(s):
		case strings.HasPrefix(strings.TrimSpace(s), "S"):
			errs = append(errs, fmt.Errorf("trusted signer #%d looks like an nkey seed: list public keys (U...) only, and treat that seed as leaked", n))
		case nkeys.IsValidPublicKey(s):
			errs = append(errs, fmt.Errorf("trusted signer %s is %s key; want a user public key (U...)", s, kind(s)))
		default:
			errs = append(errs, fmt.Errorf("trusted signer #%d is not a user public key (U... of 56 characters)", n))
		}
	}
	if p.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("max request age %v is negative", p.MaxAge))
	}
	if p.Skew < 0 {
		errs = append(errs, fmt.Errorf("clock skew %v is negative", p.Skew))
	}
	if span := p.maxAge() + p.skew(); p.MaxAge >= 0 && p.Skew >= 0 && span > MaxAgeLimit {
		errs = append(errs, fmt.Errorf("max request age %v plus clock skew %v is %v; at most %v keeps replays inside the results stream's duplicates window",
			p.maxAge(), p.skew(), span, MaxAgeLimit))
	}
	for i, s := range p.AllowedSources {
		if strings.TrimSpace(s) == "" {
			errs = append(errs, fmt.Errorf("allowed source #%d is empty", i+1))
		}
	}
	return errors.Join(errs...)
}

// Authorize is [Policy.AuthorizeAt] measuring the request's age at p.Now().
func (p *Policy) Authorize(header map[string][]string, body []byte, req events.Request) error {
	return p.AuthorizeAt(header, body, req, p.now())
}

// AuthorizeAt decides whether a request may act: nil, or an error whose text says why
// not. header is the message header, body its exact bytes, req what
// [events.DecodeRequest] decoded from them, and at the time to measure the request's
// age at: the time the message was stored in the stream, so that a request waiting in
// a backlog, or delivered again, is judged the same way every time.
//
// With TrustedSigners set, the request must be signed by one of them (see the package
// documentation); its id and requested_at are then taken from the signed body only,
// and a requested_at older than MaxAge at that time gives a [*StaleError]. With
// AllowedSources set, the request's source must be listed; for a signed request, the
// source in the signed body.
//
// The error never holds the signature or any header value other than a valid public
// key.
func (p *Policy) AuthorizeAt(header map[string][]string, body []byte, req events.Request, at time.Time) error {
	if len(p.TrustedSigners) == 0 {
		return p.checkSource(req.Source)
	}
	if err := p.verify(header, body); err != nil {
		return err
	}

	// The signature covers the body only: read id, requested_at and source from it
	// alone, never from a CloudEvents header.
	signed, err := events.DecodeRequest(nil, body, "")
	if err != nil {
		if ie := (*events.InvalidRequestError)(nil); errors.As(err, &ie) {
			return fmt.Errorf("signed body is not a valid request: %s", ie.Reason)
		}
		return fmt.Errorf("signed body is not a valid request: %w", err)
	}
	switch {
	case signed.ID == "" && hasHeader(header, "ce-id"):
		return errors.New("id must be in the signed body: the ce-id header is not covered by the signature")
	case signed.ID == "":
		return errors.New("id is required for signed requests (a Nats-Msg-Id header or the stream sequence does not count)")
	case signed.ID != req.ID:
		return fmt.Errorf("request id %s is not the id %s in the signed body", events.Quote(req.ID), events.Quote(signed.ID))
	case signed.RequestedAt.IsZero() && hasHeader(header, "ce-time"):
		return errors.New("requested_at must be in the signed body: the ce-time header is not covered by the signature")
	case signed.RequestedAt.IsZero():
		return errors.New("requested_at is required for signed requests")
	}
	age, maxAge, skew := at.Sub(signed.RequestedAt), p.maxAge(), p.skew()
	if age > maxAge {
		return &StaleError{RequestedAt: signed.RequestedAt, Age: age, MaxAge: maxAge}
	}
	if -age > skew {
		return fmt.Errorf("requested_at %s is %v in the future; at most %v of clock skew is accepted",
			signed.RequestedAt.Format(time.RFC3339Nano), beyond(-age, skew), skew)
	}
	if len(p.AllowedSources) > 0 && signed.Source == "" && req.Source != "" {
		return fmt.Errorf("source %s is in the ce-source header, which the signature does not cover; put source in the signed body",
			events.Quote(req.Source))
	}
	return p.checkSource(signed.Source)
}

// checkSource applies AllowedSources.
func (p *Policy) checkSource(source string) error {
	switch {
	case len(p.AllowedSources) == 0 || slices.Contains(p.AllowedSources, source):
		return nil
	case source == "":
		return errors.New("request has no source; only allowed sources may act")
	}
	return fmt.Errorf("source %s is not allowed", events.Quote(source))
}

// verify checks the signature headers against body.
func (p *Policy) verify(header map[string][]string, body []byte) error {
	signer, signerOK, err := oneHeader(header, HeaderSigner)
	if err != nil {
		return err
	}
	sig, sigOK, err := oneHeader(header, HeaderSignature)
	if err != nil {
		return err
	}
	switch {
	case !signerOK && !sigOK:
		return fmt.Errorf("request is not signed: no %s or %s header", HeaderSigner, HeaderSignature)
	case !signerOK:
		return fmt.Errorf("no %s header", HeaderSigner)
	case !sigOK:
		return fmt.Errorf("no %s header", HeaderSignature)
	}

	// Name the signer only once it is a valid public key: the header could hold
	// anything, a seed pasted by mistake included.
	switch {
	case !nkeys.IsValidPublicKey(signer):
		return fmt.Errorf("%s header is not an nkey public key", HeaderSigner)
	case !nkeys.IsValidPublicUserKey(signer):
		return fmt.Errorf("signer %s is %s key; requests are signed with user keys (U...)", signer, kind(signer))
	case !slices.Contains(p.TrustedSigners, signer):
		return fmt.Errorf("signer %s is not trusted", signer)
	}

	enc := base64.RawURLEncoding
	if strings.HasSuffix(sig, "=") {
		enc = base64.URLEncoding
	}
	raw, err := enc.Strict().DecodeString(sig)
	switch {
	case err != nil:
		return fmt.Errorf("%s header is not base64url", HeaderSignature)
	case len(raw) != ed25519.SignatureSize:
		return fmt.Errorf("%s header holds %d bytes; an Ed25519 signature has %d", HeaderSignature, len(raw), ed25519.SignatureSize)
	}
	kp, err := nkeys.FromPublicKey(signer)
	if err != nil { // IsValidPublicUserKey said it decodes
		return fmt.Errorf("signer %s cannot verify: %w", signer, err)
	}
	if err := kp.Verify(body, raw); err != nil {
		return fmt.Errorf("signature does not verify for signer %s", signer)
	}
	return nil
}

// StaleError is the error for a signed request whose requested_at is older than the
// policy's MaxAge. The signature verified, so RequestedAt is what the signer wrote and
// the request id is authentic: a worker may use Age to recognise a replay that comes
// after the results stream's duplicates window (see the package documentation).
type StaleError struct {
	RequestedAt time.Time     // from the signed body
	Age         time.Duration // at the time the request was judged at
	MaxAge      time.Duration // the policy's limit
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("requested_at %s is %v old; at most %v is accepted",
		e.RequestedAt.Format(time.RFC3339Nano), beyond(e.Age, e.MaxAge), e.MaxAge)
}

// beyond truncates d, which exceeds limit, as coarsely as it can while it still reads
// as more than limit.
func beyond(d, limit time.Duration) time.Duration {
	for _, unit := range []time.Duration{time.Second, time.Millisecond, time.Microsecond} {
		if r := d.Truncate(unit); r > limit {
			return r
		}
	}
	return d
}

// oneHeader returns the single value of the header name (any case). A header present
// more than once, under one spelling or several, is refused: two readers could pick
// different values.
func oneHeader(header map[string][]string, name string) (v string, ok bool, err error) {
	n := 0
	for k, vs := range header {
		if strings.EqualFold(k, name) {
			n += len(vs)
			if len(vs) > 0 {
				v = vs[0]
			}
		}
	}
	switch {
	case n == 0:
		return "", false, nil
	case n > 1:
		return "", false, fmt.Errorf("more than one %s header", name)
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return "", false, fmt.Errorf("%s header is empty", name)
	}
	return v, true, nil
}

func hasHeader(header map[string][]string, name string) bool {
	for k, vs := range header {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return true
		}
	}
	return false
}

// kind names the type of a valid public key with its article: "an account".
func kind(public string) string {
	k := nkeys.Prefix(public).String()
	if strings.ContainsRune("aeiouAEIOUx", rune(k[0])) {
		return "an " + k
	}
	return "a " + k
}
