package main

import (
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/revoker/revoker/events/auth"
	"github.com/revoker/revoker/worker"
)

// requestPolicy is the request-authentication policy of "run", or nil when
// neither trusted signers nor allowed sources are configured.
func requestPolicy(cfg Config) worker.Policy {
	if len(cfg.TrustedSigners) == 0 && len(cfg.AllowedSources) == 0 {
		return nil
	}
	return authPolicy(cfg)
}

// authPolicy is the policy cfg describes; parseConfig validates it.
func authPolicy(cfg Config) *auth.Policy {
	return &auth.Policy{
		TrustedSigners: cfg.TrustedSigners,
		MaxAge:         cfg.MaxRequestAge,
		AllowedSources: cfg.AllowedSources,
	}
}

// requestSigner signs the requests "revoker revoke" publishes; nil signs
// nothing.
type requestSigner struct{ kp nkeys.KeyPair }

func newRequestSigner(seedPath string) (*requestSigner, error) {
	if seedPath == "" {
		return nil, nil
	}
	kp, err := auth.LoadSeed(seedPath)
	if err != nil {
		return nil, fmt.Errorf("REVOKER_SIGNER_SEED: %w", err)
	}
	return &requestSigner{kp: kp}, nil
}

// sign sets the signature headers of msg and returns the signature; "" when
// s is nil.
func (s *requestSigner) sign(msg *nats.Msg) (string, error) {
	if s == nil {
		return "", nil
	}
	signer, signature, err := auth.SignWith(s.kp, msg.Data)
	if err != nil {
		return "", fmt.Errorf("signing the request: %w", err)
	}
	msg.Header.Set(auth.HeaderSigner, signer)
	msg.Header.Set(auth.HeaderSignature, signature)
	return signature, nil
}

// wipe clears the seed from memory.
func (s *requestSigner) wipe() {
	if s != nil {
		s.kp.Wipe()
	}
}
