package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/kalshi"
)

// secret holds sensitive bytes, such as a PEM private key. It prints, logs
// and marshals as REDACTED, so logging a whole Config is safe.
type secret []byte

const redacted = "REDACTED"

func (secret) String() string               { return redacted }
func (secret) GoString() string             { return redacted }
func (secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (secret) Format(f fmt.State, _ rune)   { _, _ = io.WriteString(f, redacted) }
func (s secret) Bytes() []byte              { return []byte(s) }
func (s *secret) wipe()                     { clear(*s); *s = nil }

func (p *parser) natsTLS() (ca, cert, key string) {
	caS, certS, keyS := p.get("nats-tls-ca"), p.get("nats-tls-cert"), p.get("nats-tls-key")
	ca, cert, key = caS.val, certS.val, keyS.val
	if ca != "" {
		if data, _, ok := p.readFile(caS); ok && !x509.NewCertPool().AppendCertsFromPEM(data) {
			p.problem("%s: %s holds no PEM certificate", caS.label(), ca)
		}
	}
	switch {
	case cert != "" && key == "":
		p.problem("%s is set but %s is not; set both or neither", certS.label(), keyS.label())
	case cert == "" && key != "":
		p.problem("%s is set but %s is not; set both or neither", keyS.label(), certS.label())
	case cert != "":
		_, _, okCert := p.readFile(certS)
		keyData, okKey := p.secretFile(keyS)
		clear(keyData)
		if okCert && okKey {
			if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
				p.problem("%s and %s do not make a certificate: %s", certS.label(), keyS.label(), plainTLSError(err))
			}
		}
	}
	return ca, cert, key
}

// credsFile checks a NATS .creds file: a user JWT and its nkey seed.
func (p *parser) credsFile(key string) string { return p.natsUserFile(key, true) }

// seedFile checks an nkey seed file: a user seed.
func (p *parser) seedFile(key string) string { return p.natsUserFile(key, false) }

// natsUserFile checks the secret file setting key names: a NATS user seed
// and, with creds, a user JWT. The data is wiped once checked.
func (p *parser) natsUserFile(key string, creds bool) string {
	s := p.get(key)
	if s.val == "" {
		return ""
	}
	data, ok := p.secretFile(s)
	if !ok {
		return s.val
	}
	defer clear(data)
	if why := natsUserKeyProblem(data, creds); why != "" {
		p.problem("%s: %s %s", s.label(), s.val, why)
	}
	return s.val
}

// natsUserKeyProblem says why data is not a NATS user seed file or, with
// creds, a .creds file; "" when it is one. nkeys and jwt parse it, as
// nats.go will; the message never includes the data.
func natsUserKeyProblem(data []byte, creds bool) string {
	kp, err := nkeys.ParseDecoratedUserNKey(data)
	if err == nil {
		kp.Wipe()
	}
	if creds {
		token, _ := nkeys.ParseDecoratedJWT(data)
		if _, jwtErr := jwt.DecodeUserClaims(token); err != nil || jwtErr != nil {
			return "is not a NATS user credentials file (a user JWT and its nkey seed)"
		}
		return ""
	}
	if err != nil {
		return "holds no NATS user nkey seed (one line starting with SU)"
	}
	return ""
}

// readFile reads a small local file named by setting s, reporting why it
// cannot. The error never includes the file's contents.
func (p *parser) readFile(s *setting) ([]byte, fs.FileMode, bool) {
	data, mode, err := readSmallFile(s.val)
	if err != nil {
		p.problem("%s: %v", s.label(), err)
		return nil, 0, false
	}
	return data, mode, true
}

// readSmallFile reads a regular file of at most maxSecretFile bytes. Its
// errors name the file and the reason, never the contents.
func readSmallFile(path string) ([]byte, fs.FileMode, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot read %s: %w", path, pathErrorReason(err))
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("cannot read %s: %w", path, pathErrorReason(err))
	}
	if info.IsDir() {
		return nil, 0, fmt.Errorf("%s is a directory, not a file", path)
	}
	data, err := readCapped(f)
	switch {
	case errors.Is(err, errTooLarge):
		return nil, 0, fmt.Errorf("%s is larger than %d KiB; that is not a key or certificate", path, maxSecretFile>>10)
	case err != nil:
		return nil, 0, fmt.Errorf("cannot read %s: %w", path, pathErrorReason(err))
	}
	return data, info.Mode(), nil
}

// errTooLarge: more than maxSecretFile bytes.
var errTooLarge = errors.New("too large")

// readCapped reads r to its end, at most maxSecretFile bytes; what it read
// is wiped when it fails.
func readCapped(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxSecretFile+1))
	if err == nil && len(data) > maxSecretFile {
		err = errTooLarge
	}
	if err != nil {
		clear(data)
		return nil, err
	}
	return data, nil
}

// pathErrorReason drops the "open PATH:" prefix of an *fs.PathError.
func pathErrorReason(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// secretFile reads the secret file setting s names: a private key, an nkey
// seed or a .creds file. One rule for all of them: a file every user may
// read is refused; one its group or every user may write is warned about
// (whoever can replace the key can make revoker sign with theirs). A file
// its group may read is fine: that is how Kubernetes mounts a Secret for a
// pod's fsGroup (0440), and the group is the operator's to choose. The
// caller clears the data.
func (p *parser) secretFile(s *setting) ([]byte, bool) {
	data, mode, ok := p.readFile(s)
	if !ok || runtime.GOOS == "windows" {
		return data, ok
	}
	switch perm := mode.Perm(); {
	case perm&0o004 != 0:
		clear(data)
		p.problem("%s: %s is readable by every user (mode %04o); run chmod 600 %s", s.label(), s.val, perm, s.val)
		return nil, false
	case perm&0o002 != 0:
		p.warn("%s: %s is writable by every user (mode %04o); run chmod 600 %s", s.label(), s.val, perm, s.val)
	case perm&0o020 != 0:
		p.warn("%s: %s is writable by its group (mode %04o); run chmod g-w %s", s.label(), s.val, perm, s.val)
	}
	return data, true
}

// kalshiPrivateKey returns the key file's path (if any) and the PEM, from
// KALSHI_PRIVATE_KEY_PATH or KALSHI_PRIVATE_KEY. A path given as a flag
// beats KALSHI_PRIVATE_KEY; both in the environment is a problem.
func (p *parser) kalshiPrivateKey(spec command) (string, secret) {
	pathS, pemS := p.get("kalshi-private-key"), p.get("KALSHI_PRIVATE_KEY")
	path, content := pathS.val, pemS.val
	switch {
	case path != "" && content != "" && p.onCommandLine[pathS.key()]:
		p.warn("KALSHI_PRIVATE_KEY is ignored: --kalshi-private-key %s is given", path)
		content = ""
	case path != "" && content != "":
		p.problem("%s and KALSHI_PRIVATE_KEY are both set; set only one (a file path or the PEM itself)", pathS.label())
		return path, nil
	case path == "" && content == "":
		if spec.needKalshi {
			p.problem("%s or KALSHI_PRIVATE_KEY is required for \"revoker %s\"", pathS.label(), p.invocation)
		}
		return "", nil
	}

	if content != "" {
		return "", p.privateKey("KALSHI_PRIVATE_KEY", []byte(content))
	}
	data, ok := p.secretFile(pathS)
	if !ok {
		return path, nil
	}
	return path, p.privateKey(pathS.label()+": "+path, data)
}

// privateKey keeps data if kalshi can sign with it, and wipes it otherwise.
func (p *parser) privateKey(what string, data []byte) secret {
	if _, err := kalshi.ParsePrivateKey(data); err != nil {
		clear(data)
		p.problem("%s: %v", what, err)
		return nil
	}
	return secret(data)
}

// plainTLSError drops the "tls: " prefix of crypto/tls errors.
func plainTLSError(err error) string {
	return strings.TrimPrefix(pathErrorReason(err).Error(), "tls: ")
}
