package kalshi

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxKeyFile bounds what LoadPrivateKey reads; a PEM RSA-8192 key is ~6 KiB.
const maxKeyFile = 1 << 20

// ParsePrivateKey parses a PEM-encoded private key: PKCS#1 ("RSA PRIVATE
// KEY", what Kalshi's web UI downloads) or PKCS#8 ("PRIVATE KEY") holding an
// RSA or Ed25519 key. It returns a *rsa.PrivateKey or an ed25519.PrivateKey.
//
// Text before the PEM block is ignored, and a PEM whose line breaks were
// flattened to literal "\n" sequences (as often happens in environment
// variables) is accepted. Encrypted PEM, EC keys and other formats are
// refused with an error that names the problem. Errors never contain the
// input.
func ParsePrivateKey(pemBytes []byte) (crypto.Signer, error) {
	if len(bytes.TrimSpace(pemBytes)) == 0 {
		return nil, errors.New("private key: empty input, want a PEM private key")
	}
	block := findKeyBlock(pemBytes)
	if block == nil && bytes.Contains(pemBytes, []byte(`\n`)) {
		block = findKeyBlock(bytes.ReplaceAll(pemBytes, []byte(`\n`), []byte("\n")))
	}
	if block == nil {
		return nil, errors.New("private key: no PEM block found, want a PEM private key (BEGIN RSA PRIVATE KEY or BEGIN PRIVATE KEY)")
	}
	if _, ok := block.Headers["Proc-Type"]; ok || block.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, errors.New("private key: encrypted PEM is not supported, decrypt it first (for example openssl pkey -in KEY -out PLAIN)")
	}
	switch block.Type {
	case "RSA PRIVATE KEY", "PRIVATE KEY":
		return parseDER(block.Type, block.Bytes)
	case "EC PRIVATE KEY":
		return nil, errors.New("private key: EC (ECDSA) keys are not supported by Kalshi, want RSA or Ed25519")
	case "OPENSSH PRIVATE KEY":
		return nil, errors.New("private key: OpenSSH key format is not supported, want PKCS#1 or PKCS#8 PEM")
	default:
		return nil, fmt.Errorf("private key: unsupported PEM block type %q, want RSA PRIVATE KEY or PRIVATE KEY", block.Type)
	}
}

// parseDER parses PKCS#1 or PKCS#8 DER, trying the format the PEM type names
// first and the other one second (mislabelled files are common).
func parseDER(typ string, der []byte) (crypto.Signer, error) {
	if typ == "RSA PRIVATE KEY" {
		k, err1 := x509.ParsePKCS1PrivateKey(der)
		if err1 == nil {
			return k, nil
		}
		if _, err8 := x509.ParsePKCS8PrivateKey(der); err8 != nil {
			return nil, fmt.Errorf("private key: invalid PKCS#1 RSA key: %w", derError(err1))
		}
	}
	k, err8 := x509.ParsePKCS8PrivateKey(der)
	if err8 != nil {
		if k1, err1 := x509.ParsePKCS1PrivateKey(der); err1 == nil {
			return k1, nil
		}
		return nil, fmt.Errorf("private key: invalid PKCS#8 key: %w", derError(err8))
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return nil, errors.New("private key: EC (ECDSA) keys are not supported by Kalshi, want RSA or Ed25519")
	case *ecdh.PrivateKey:
		return nil, errors.New("private key: X25519 keys cannot sign, want RSA or Ed25519")
	default:
		return nil, fmt.Errorf("private key: unsupported PKCS#8 key type %T, want RSA or Ed25519", k)
	}
}

// findKeyBlock returns the first PEM block that looks like a private key,
// else the first block of any type (so the error can name it), else nil.
func findKeyBlock(data []byte) *pem.Block {
	var first *pem.Block
	for {
		block, rest := pem.Decode(data)
		if block == nil {
			return first
		}
		if strings.HasSuffix(block.Type, "PRIVATE KEY") {
			return block
		}
		if first == nil {
			first = block
		}
		data = rest
	}
}

// derError keeps the reason a DER structure was refused. The standard
// library's messages describe the structure, never its content; a long one
// is replaced by a fixed message all the same.
func derError(err error) error {
	if len(err.Error()) > 200 {
		return errors.New("malformed key data")
	}
	return err
}

// LoadPrivateKey reads a PEM private key file and parses it with
// [ParsePrivateKey].
func LoadPrivateKey(path string) (crypto.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load private key: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("load private key %s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("load private key %s: file larger than %d bytes", path, maxKeyFile)
	}
	k, err := ParsePrivateKey(data)
	clear(data)
	if err != nil {
		return nil, fmt.Errorf("load private key %s: %w", path, err)
	}
	return k, nil
}

// Fingerprint names a public key (or the public half of a private one)
// without revealing the private key: "sha256:" and the hex SHA-256 of its
// DER (PKIX) encoding, as "openssl pkey -pubout -outform DER | sha256sum"
// prints it.
func Fingerprint(pub crypto.PublicKey) (string, error) {
	if s, ok := pub.(crypto.Signer); ok {
		pub = s.Public()
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("fingerprint: %w", err)
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// keyKind is the signature scheme a key uses with Kalshi.
type keyKind int

const (
	kindRSA keyKind = iota + 1
	kindEd25519
)

// kindOf tells which scheme a signer uses, from its public key, so that
// keys held elsewhere (an HSM, a KMS) work too.
func kindOf(k crypto.Signer) (keyKind, error) {
	if k == nil {
		return 0, errors.New("private key is required")
	}
	switch pub := k.Public().(type) {
	case *rsa.PublicKey:
		if pub.N == nil || pub.N.BitLen() < 1024 {
			return 0, errors.New("private key: RSA key shorter than 1024 bits")
		}
		return kindRSA, nil
	case ed25519.PublicKey:
		return kindEd25519, nil
	default:
		return 0, fmt.Errorf("private key: unsupported key type %T, want RSA or Ed25519", pub)
	}
}

// redacted stands where key material could otherwise be printed.
const redacted = "REDACTED"
