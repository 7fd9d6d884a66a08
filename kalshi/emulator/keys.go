package emulator

import (
	"cmp"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
)

// defaultScopes are the scopes of a key added without any.
var defaultScopes = []string{"read", "write"}

// apiKey is a registered key with its public key parsed once. Only
// keepListed changes after registration, under Emulator.mu.
type apiKey struct {
	id         string
	account    string
	name       string
	scopes     []string
	subaccount *int // restricted to one subaccount (0-63); nil: the whole member
	rsa        *rsa.PublicKey
	ed         ed25519.PublicKey
	seq        uint64 // registration order, the order GET /api_keys lists
	keepListed bool   // still listed once deleted (KeepListing)
}

// pss32 is the only PSS parameter set Kalshi accepts: salt of exactly 32
// bytes. A signature made with the maximum salt length does not verify.
var pss32 = rsa.PSSOptions{SaltLength: 32, Hash: crypto.SHA256}

// verify checks sig over text.
func (k *apiKey) verify(text, sig []byte) bool {
	if k.rsa != nil {
		digest := sha256.Sum256(text)
		return rsa.VerifyPSS(k.rsa, crypto.SHA256, digest[:], sig, &pss32) == nil
	}
	return len(sig) == ed25519.SignatureSize && ed25519.Verify(k.ed, text, sig)
}

func (k *apiKey) equalPublic(pub crypto.PublicKey) bool {
	if k.rsa != nil {
		return k.rsa.Equal(pub)
	}
	return k.ed.Equal(pub)
}

// publicKey normalizes what AddKey accepts: an RSA or Ed25519 public key,
// or anything with a Public method returning one (such as a private key).
func publicKey(pub crypto.PublicKey) (*rsa.PublicKey, ed25519.PublicKey, error) {
	if s, ok := pub.(interface{ Public() crypto.PublicKey }); ok {
		pub = s.Public()
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return p, nil, nil
	case rsa.PublicKey:
		return &p, nil, nil
	case ed25519.PublicKey:
		if len(p) != ed25519.PublicKeySize {
			return nil, nil, errors.New("invalid Ed25519 public key")
		}
		return nil, p, nil
	default:
		return nil, nil, fmt.Errorf("unsupported public key type %T, want RSA or Ed25519", pub)
	}
}

// AddKey registers a public key (RSA or Ed25519; a private key is accepted
// and its public half used) in the default account under a new lower-case
// UUID, which it returns. One public key may be added any number of times,
// each under a new ID. Without scopes the key gets "read" and "write". It
// panics on any other key type.
func (e *Emulator) AddKey(name string, pub crypto.PublicKey, scopes ...string) string {
	id, err := e.addKey("", name, pub, scopes, nil, false)
	if err != nil {
		panic("emulator: AddKey: " + err.Error())
	}
	return id
}

// AddKeyIn is AddKey for the account named account ("" is the default
// account). A key of another account authenticates like any other, but
// neither lists nor deletes the keys of the default account, nor they its.
func (e *Emulator) AddKeyIn(account, name string, pub crypto.PublicKey, scopes ...string) string {
	id, err := e.addKey(account, name, pub, scopes, nil, false)
	if err != nil {
		panic("emulator: AddKeyIn: " + err.Error())
	}
	return id
}

// AddSubaccountKey is AddKey for a key restricted to one subaccount (0-63),
// which GET /api_keys lists with it. Such a key may only act on that
// subaccount: its order cancels cover no other. It panics on a subaccount
// outside 0-63.
func (e *Emulator) AddSubaccountKey(name string, pub crypto.PublicKey, subaccount int, scopes ...string) string {
	if !validSubaccount(subaccount) {
		panic(fmt.Sprintf("emulator: AddSubaccountKey: subaccount %d is not 0-63", subaccount))
	}
	id, err := e.addKey("", name, pub, scopes, &subaccount, false)
	if err != nil {
		panic("emulator: AddSubaccountKey: " + err.Error())
	}
	return id
}

// addKey registers pub in account; with unique, a public key already
// registered in any account is refused (as POST /api_keys does) rather than
// added again.
func (e *Emulator) addKey(account, name string, pub crypto.PublicKey, scopes []string, subaccount *int, unique bool) (string, error) {
	rk, ek, err := publicKey(pub)
	if err != nil {
		return "", err
	}
	if len(scopes) == 0 {
		scopes = defaultScopes
	}
	k := &apiKey{id: newUUID(), account: account, name: name, scopes: slices.Clone(scopes), subaccount: subaccount, rsa: rk, ed: ek}
	var norm crypto.PublicKey = ek
	if rk != nil {
		norm = rk
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if unique {
		for _, other := range e.keys {
			if other.equalPublic(norm) {
				return "", errDuplicateKey
			}
		}
	}
	e.seq++
	k.seq = e.seq
	e.keys[k.id] = k
	return k.id, nil
}

var errDuplicateKey = errors.New("public key already registered")

// GenerateKey creates an RSA-2048 key, registers it under name and returns
// its ID and its private key as PKCS#1 PEM ("RSA PRIVATE KEY"), the format
// Kalshi's web UI hands out.
func (e *Emulator) GenerateKey(name string) (id string, pemPKCS1 []byte, err error) {
	id, pemPKCS1, err = e.generate("", name, nil, nil)
	if err != nil {
		return "", nil, fmt.Errorf("emulator: generate key: %w", err)
	}
	return id, pemPKCS1, nil
}

// HasKey reports whether the key id exists (was added and not deleted),
// in any account. A deleted key that KeepListing still lists does not.
func (e *Emulator) HasKey(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.keys[id]
	return ok
}

// RemoveKey deletes the key id as if by another client of its account,
// not counted in Stats. It reports whether the key existed.
func (e *Emulator) RemoveKey(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := e.keys[id]
	if k != nil {
		e.removeLocked(k)
	}
	return k != nil
}

// removeLocked deletes k, keeping its record so that its ID stays known to
// Stats.BySigner and KeepListing can still list it. Call with e.mu held.
func (e *Emulator) removeLocked(k *apiKey) {
	delete(e.keys, k.id)
	e.gone[k.id] = k
}

// KeepListing is a fault for testing that revoker confirms a key is dead
// by its signed call failing, not by its absence from GET /api_keys: once
// the key id is deleted (by DELETE /api_keys/{id} or RemoveKey, before or
// after this call), GET /api_keys of its account still lists it in its old
// place with its name and scopes, as a stale listing would. In every other
// way the key is deleted: its requests get 401 NOT_FOUND, another DELETE
// answers 404 and HasKey reports false. An ID the emulator never had is
// ignored.
func (e *Emulator) KeepListing(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if k := e.keys[id]; k != nil {
		k.keepListed = true
	} else if k := e.gone[id]; k != nil {
		k.keepListed = true
	}
}

// knownLocked reports whether id is the ID of a key that exists or
// existed. Call with e.mu held.
func (e *Emulator) knownLocked(id string) bool {
	return e.keys[id] != nil || e.gone[id] != nil
}

// KeyIDs returns the IDs of the existing keys of the default account,
// oldest first.
func (e *Emulator) KeyIDs() []string { return e.AccountKeyIDs("") }

// AccountKeyIDs returns the IDs of the existing keys of account, oldest
// first. Deleted keys that KeepListing still lists are not among them.
func (e *Emulator) AccountKeyIDs(account string) []string {
	keys := e.listKeys(account, false)
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.id
	}
	return ids
}

// listKeys returns the existing keys of account, oldest first; with stale,
// also its deleted keys marked by KeepListing.
func (e *Emulator) listKeys(account string, stale bool) []*apiKey {
	var keys []*apiKey
	e.mu.Lock()
	for _, k := range e.keys {
		if k.account == account {
			keys = append(keys, k)
		}
	}
	if stale {
		for _, k := range e.gone {
			if k.account == account && k.keepListed {
				keys = append(keys, k)
			}
		}
	}
	e.mu.Unlock()
	slices.SortFunc(keys, func(a, b *apiKey) int { return cmp.Compare(a.seq, b.seq) })
	return keys
}

// newUUID returns a random (version 4) UUID in lower case.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// isUUID reports whether s has the 8-4-4-4-12 hex form of a UUID.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// generate creates and registers an RSA-2048 key in account, returning its
// PKCS#1 PEM.
func (e *Emulator) generate(account, name string, scopes []string, subaccount *int) (string, []byte, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", nil, err
	}
	id, err := e.addKey(account, name, &priv.PublicKey, scopes, subaccount, false)
	if err != nil {
		return "", nil, err
	}
	return id, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(priv)}), nil
}

// parsePublicKeyPEM reads a PKIX ("PUBLIC KEY") or PKCS#1 ("RSA PUBLIC
// KEY") public key.
func parsePublicKeyPEM(s string) (crypto.PublicKey, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM type %q", block.Type)
	}
}
