package main

import (
	"bytes"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/revoker/revoker/events/auth"
	"github.com/revoker/revoker/worker"
)

// requestPolicy is the request-authentication policy of "run", or nil when
// neither trusted signers nor allowed sources are configured.
func requestPolicy(cfg Config) worker.Policy {
	if len(cfg.TrustedSigners) == 0 && len(cfg.AllowedSources) == 0 {
		return nil
	}
	return &auth.Policy{
		TrustedSigners: cfg.TrustedSigners,
		MaxAge:         cfg.MaxRequestAge,
		AllowedSources: cfg.AllowedSources,
	}
}

// requestSigner signs the requests "revoker revoke" publishes; nil signs
// nothing.
type requestSigner struct{ seed []byte }

func newRequestSigner(seedPath string) (*requestSigner, error) {
	if seedPath == "" {
		return nil, nil
	}
	seed, err := os.ReadFile(seedPath)
	if err != nil {
		return nil, fmt.Errorf("REVOKER_SIGNER_SEED: %w", err)
	}
	return &requestSigner{seed: bytes.TrimSpace(seed)}, nil
}

func (s *requestSigner) sign(msg *nats.Msg) error {
	if s == nil {
		return nil
	}
	signer, signature, err := auth.Sign(s.seed, msg.Data)
	if err != nil {
		return fmt.Errorf("signing the request: %w", err)
	}
	msg.Header.Set(auth.HeaderSigner, signer)
	msg.Header.Set(auth.HeaderSignature, signature)
	return nil
}
