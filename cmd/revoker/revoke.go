package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
)

// revoke is "revoker revoke KEY_ID...".
func revoke(ctx context.Context, cfg Config, keyIDs []string, logger *slog.Logger, stdout io.Writer) error {
	nc, err := connectNATS(ctx, cfg, "revoker-cli", logger)
	if err != nil {
		return err
	}
	defer nc.Close()
	return printRevocations(ctx, nc, cfg, keyIDs, stdout)
}

// outcome is what became of one requested key: its result, as stored and
// as parsed, or nothing yet.
type outcome struct {
	keyID, requestID string
	doc              []byte
	result           *events.Result
}

// printRevocations requests the revocations, waits for them and prints one
// line (or document) per key. It fails with exit status 1 unless every key
// ended revoked or already_revoked.
func printRevocations(ctx context.Context, nc *nats.Conn, cfg Config, keyIDs []string, stdout io.Writer) error {
	outcomes, err := requestRevocations(ctx, nc, cfg, keyIDs)
	if err != nil {
		return err
	}
	ok := true
	for _, o := range outcomes {
		switch {
		case o.result == nil:
			ok = false
			fmt.Fprintf(stdout, "%s pending: no outcome within %v (request %s stays queued and will still be carried out)\n", o.keyID, cfg.Timeout, o.requestID)
		case cfg.JSON:
			fmt.Fprintf(stdout, "%s\n", o.doc)
		case o.result.Error != nil:
			fmt.Fprintf(stdout, "%s %s %s: %s\n", o.keyID, o.result.Outcome, o.result.Error.Code, o.result.Error.Message)
		default:
			fmt.Fprintf(stdout, "%s %s\n", o.keyID, o.result.Outcome)
		}
		if o.result != nil && !o.result.Outcome.Succeeded() {
			ok = false
		}
	}
	if !ok {
		return exitError{1}
	}
	return nil
}

// requestRevocations subscribes to the results first, then publishes one
// request per key, and waits until every outcome arrived or cfg.Timeout.
func requestRevocations(ctx context.Context, nc *nats.Conn, cfg Config, keyIDs []string) ([]*outcome, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	run := make([]byte, 6)
	_, _ = rand.Read(run)
	byRequest := make(map[string]*outcome, len(keyIDs))
	outcomes := make([]*outcome, len(keyIDs))
	for i, k := range keyIDs {
		o := &outcome{keyID: k, requestID: fmt.Sprintf("revoker-cli-%s-%d", hex.EncodeToString(run), i+1)}
		outcomes[i] = o
		byRequest[o.requestID] = o
	}

	var mu sync.Mutex
	remaining := len(keyIDs)
	allDone := make(chan struct{})
	sub, err := nc.Subscribe(cfg.ResultsSubject+".>", func(m *nats.Msg) {
		res, err := events.ParseResult(m.Data)
		if err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		o := byRequest[res.RequestID]
		if o == nil || o.result != nil { // another request's, or a repeat
			return
		}
		o.result, o.doc = &res, m.Data
		if remaining--; remaining == 0 {
			close(allDone)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribing to %s.>: %w", cfg.ResultsSubject, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	signer, err := newRequestSigner(cfg.SignerSeed)
	if err != nil {
		return nil, err
	}
	for _, o := range outcomes {
		msg, err := newRequestMsg(cfg, o, signer)
		if err != nil {
			return nil, err
		}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			return nil, fmt.Errorf("publishing the request for %s: %w", o.keyID, err)
		}
	}
	select {
	case <-allDone:
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	snapshot := make([]*outcome, len(outcomes))
	for i, o := range outcomes {
		c := *o
		snapshot[i] = &c
	}
	return snapshot, nil
}

func newRequestMsg(cfg Config, o *outcome, signer *requestSigner) (*nats.Msg, error) {
	body, err := json.Marshal(map[string]string{
		"id":           o.requestID,
		"api_key_id":   o.keyID,
		"reason":       cfg.Reason,
		"requested_by": cfg.RequestedBy,
		"source":       cfg.Source,
		"requested_at": time.Now().UTC().Format(time.RFC3339Nano),
	})
	if err != nil {
		return nil, err
	}
	msg := nats.NewMsg(cfg.RequestsSubject)
	msg.Data = body
	msg.Header.Set(jetstream.MsgIDHeader, o.requestID)
	if err := signer.sign(msg); err != nil {
		return nil, err
	}
	return msg, nil
}
