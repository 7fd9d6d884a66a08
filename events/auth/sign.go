package auth

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nkeys"
)

// Sign signs body with a user nkey seed (SU...) and returns the values of the
// [HeaderSigner] and [HeaderSignature] headers. Surrounding white space in seed is
// ignored. The error never holds the seed.
func Sign(seed []byte, body []byte) (signer, signature string, err error) {
	kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		return "", "", errors.New("signer seed is not a valid nkey seed")
	}
	defer kp.Wipe()
	return SignWith(kp, body)
}

// SignWith is [Sign] with a key pair, such as one from [LoadSeed].
func SignWith(kp nkeys.KeyPair, body []byte) (signer, signature string, err error) {
	signer, err = kp.PublicKey()
	if err != nil {
		return "", "", fmt.Errorf("signer key: %w", err)
	}
	if !nkeys.IsValidPublicUserKey(signer) {
		return "", "", fmt.Errorf("signer key is %s key; requests are signed with a user nkey (seed SU...)", kind(signer))
	}
	sig, err := kp.Sign(body)
	if err != nil {
		return "", "", fmt.Errorf("signing with %s: %w", signer, err)
	}
	return signer, base64.RawURLEncoding.EncodeToString(sig), nil
}

// LoadSeed reads a user nkey seed (SU...) from a file: the seed alone on a line, as
// `nsc` and `nk` write it, or a decorated .creds file, whose seed it takes. The caller
// should Wipe the key pair when done. The error names the file, never its contents.
func LoadSeed(path string) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading signer seed: %w", err)
	}
	defer clear(b)
	kp, err := parseSeed(b)
	if err != nil {
		return nil, fmt.Errorf("signer seed file %s: %w", path, err)
	}
	return kp, nil
}

// parseSeed finds the one seed in a seed or .creds file.
func parseSeed(b []byte) (nkeys.KeyPair, error) {
	var kp nkeys.KeyPair
	var err error
	if bytes.Contains(b, []byte("-----")) {
		kp, err = nkeys.ParseDecoratedNKey(b)
	} else {
		err = nkeys.ErrNoSeedFound
		for line := range bytes.Lines(b) {
			if line = bytes.TrimSpace(line); bytes.HasPrefix(line, []byte("S")) {
				kp, err = nkeys.FromSeed(line)
				break
			}
		}
	}
	switch {
	case errors.Is(err, nkeys.ErrNoSeedFound):
		return nil, errors.New("no nkey seed (SU...) found")
	case err != nil:
		return nil, errors.New("not a valid nkey seed")
	}
	public, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(public) {
		kp.Wipe()
		return nil, errors.New("not a user nkey seed (SU...)")
	}
	return kp, nil
}
