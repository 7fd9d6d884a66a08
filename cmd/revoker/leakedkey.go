package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
)

// revokeLeaked is "revoker revoke --leaked-key FILE [KEY_ID]": one request
// that carries the leaked PEM (and KEY_ID as a hint); the worker finds the
// key it belongs to. The PEM is checked here first, so that a file that is
// no private key sends nothing, and is never printed: the outcome line names
// the key the result names (or, when it names none, the PEM's fingerprint),
// and a second line gives the fingerprint:
//
//	KEY_ID OUTCOME [CODE: MESSAGE]
//	KEY_ID leaked_key_fingerprint=sha256:HEX
func revokeLeaked(ctx context.Context, cfg Config, args []string, stdin io.Reader, logger *slog.Logger, stdout, stderr io.Writer) error {
	leaked, fingerprint, err := readLeakedKey(cfg.LeakedKeyFile, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "revoker revoke: nothing was sent: --leaked-key %s\n", err)
		return exitError{exitConfig}
	}
	defer clear(leaked)
	hint := ""
	if len(args) > 0 {
		hint = args[0]
	}
	ctx, nc, done, err := connectCLI(ctx, cfg, "revoker-cli", logger)
	if err != nil {
		return err
	}
	defer done()
	defer nc.Close()
	req := cliRequests([]string{hint})[0]
	req.leaked, req.fingerprint = leaked, fingerprint
	return reportRevocations(ctx, nc, cfg, []revocation{req}, logger, stdout, stderr)
}

// readLeakedKey reads the file --leaked-key names ("-": stdin), at most
// maxSecretFile bytes, and returns its private key block alone in PEM (what
// the request carries: none of the text around it, which may hold other
// secrets) and the key's fingerprint. Its errors start with the file's name
// and never hold its contents. Every copy of the key's text it made, but the
// one it returns, is wiped.
func readLeakedKey(path string, stdin io.Reader) (pemBlock []byte, fingerprint string, err error) {
	name := path
	var data []byte
	if path == "-" {
		name = "- (standard input)"
		if stdin == nil {
			return nil, "", errors.New(name + ": no standard input")
		}
		if data, err = readCapped(stdin); errors.Is(err, errTooLarge) {
			return nil, "", fmt.Errorf("%s: more than %d KiB; that is not a key", name, maxSecretFile>>10)
		} else if err != nil {
			return nil, "", fmt.Errorf("%s: %w", name, err)
		}
	} else if data, _, err = readSmallFile(path); err != nil {
		return nil, "", err // it names the file
	}
	defer clear(data)

	pemBlock = privateKeyPEM(data)
	if pemBlock == nil {
		// No block to send; kalshi says why in its own words.
		_, err := kalshi.ParsePrivateKey(data)
		if err == nil {
			err = errors.New("holds no PEM private key block")
		}
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	key, err := kalshi.ParsePrivateKey(pemBlock)
	if err != nil {
		clear(pemBlock)
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	fingerprint, err = kalshi.Fingerprint(key.Public())
	if k, ok := key.(ed25519.PrivateKey); ok {
		clear(k)
	}
	switch {
	case err != nil:
		clear(pemBlock)
		return nil, "", fmt.Errorf("%s: %w", name, err)
	case len(pemBlock) > events.MaxLeakedKeyLength:
		clear(pemBlock)
		return nil, "", fmt.Errorf("%s: the private key is %d bytes in PEM, more than the %d KiB a request may carry", name, len(pemBlock), events.MaxLeakedKeyLength>>10)
	}
	return pemBlock, fingerprint, nil
}

// privateKeyPEM finds the first PEM block of data whose type ends in
// "PRIVATE KEY", as kalshi.ParsePrivateKey does (also in text whose line
// breaks are written \n, as in a .env file), and encodes it alone, without
// headers but Proc-Type (an encrypted key, which kalshi refuses); nil when
// there is none.
func privateKeyPEM(data []byte) []byte {
	find := func(data []byte) []byte {
		for {
			block, rest := pem.Decode(data)
			if block == nil {
				return nil
			}
			if strings.HasSuffix(block.Type, "PRIVATE KEY") {
				headers := map[string]string{}
				if v, ok := block.Headers["Proc-Type"]; ok { // encrypted: kalshi says so
					headers["Proc-Type"] = v
				}
				out := pem.EncodeToMemory(&pem.Block{Type: block.Type, Headers: headers, Bytes: block.Bytes})
				clear(block.Bytes)
				return out
			}
			clear(block.Bytes)
			data = rest
		}
	}
	if out := find(data); out != nil || !bytes.Contains(data, []byte(`\n`)) {
		return out
	}
	unescaped := bytes.ReplaceAll(data, []byte(`\n`), []byte("\n"))
	defer clear(unescaped)
	return find(unescaped)
}

// withLeakedKey returns the JSON object body with "leaked_private_key" set
// to pemText, in a buffer of its own, and wipes body. It writes the JSON
// string itself, so that no copy of the key is left in the buffers
// encoding/json pools, nor in a string nothing can wipe.
func withLeakedKey(body, pemText []byte) []byte {
	const field = `,"leaked_private_key":"`
	out := make([]byte, 0, len(body)+len(field)+6*len(pemText)+2)
	out = append(out, bytes.TrimSuffix(body, []byte("}"))...)
	if len(out) > 1 { // not "{"
		out = append(out, field...)
	} else {
		out = append(out, field[1:]...)
	}
	const hexDigits = "0123456789abcdef"
	for _, c := range pemText {
		switch {
		case c == '\n':
			out = append(out, '\\', 'n')
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c < 0x20 || c >= 0x7f:
			out = append(out, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			out = append(out, c)
		}
	}
	out = append(out, '"', '}')
	clear(body)
	return out
}
