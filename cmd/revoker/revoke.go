package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/provision"
)

// revoke is "revoker revoke KEY_ID... [-f FILE]", its --dry-run, --all
// (revokeall.go) and --leaked-key (leakedkey.go).
func revoke(ctx context.Context, cfg Config, args []string, stdin io.Reader, logger *slog.Logger, stdout, stderr io.Writer) error {
	switch {
	case cfg.LeakedKeyFile != "":
		return revokeLeaked(ctx, cfg, args, stdin, logger, stdout, stderr)
	case cfg.All:
		return revokeAll(ctx, cfg, stdin, logger, stdout, stderr)
	}
	keyIDs, problems := keyList(cfg, args, stdin)
	if len(problems) > 0 {
		printProblems(stderr, "revoker revoke: nothing was sent; the key list has", problems)
		return exitError{exitConfig}
	}
	if cfg.DryRun {
		return dryRun(ctx, cfg, keyIDs, logger, stdout)
	}
	ctx, nc, done, err := connectCLI(ctx, cfg, "revoker-cli", logger)
	if err != nil {
		return err
	}
	defer done()
	defer nc.Close()
	return reportRevocations(ctx, nc, cfg, cliRequests(keyIDs), logger, stdout, stderr)
}

// notFoundHint is what revoke, its --dry-run and status say of a key the
// account does not list and revoker never revoked: a mistyped ID, one of
// another environment (demo keys are unknown in production), or a key
// someone deleted outside revoker (in Kalshi's web UI, say). Revoker cannot
// tell these apart.
const notFoundHint = "not in this account: a wrong ID, the wrong environment, or deleted outside revoker"

// notInAccount reports whether r says the key was never there for revoker:
// already_revoked, and the ledger knows of no request that revoked it.
func notInAccount(r *events.Result) bool {
	return r.Outcome == events.AlreadyRevoked && r.RevokedBy == ""
}

// revocation is one request revoke publishes.
type revocation struct {
	requestID string
	keyID     string // the key to revoke as given; with leaked, the hint or ""
	// leaked is the PEM of a leaked private key (--leaked-key), nil
	// otherwise; its owner wipes it. fingerprint names it.
	leaked      []byte
	fingerprint string
}

// cliRequests is one revocation per key, under ids that share a prefix no
// one can predict: revoker-cli-<12 random hex digits>-N.
func cliRequests(keyIDs []string) []revocation {
	run := make([]byte, 6)
	_, _ = rand.Read(run)
	reqs := make([]revocation, len(keyIDs))
	for i, k := range keyIDs {
		reqs[i] = revocation{requestID: fmt.Sprintf("revoker-cli-%s-%d", hex.EncodeToString(run), i+1), keyID: k}
	}
	return reqs
}

// outcome is what became of one revocation: its result, as stored and as
// parsed, or nothing yet.
type outcome struct {
	revocation
	seq    uint64 // the request's sequence in the requests stream; 0 until stored
	doc    []byte
	result *events.Result
	// scheduled, with --at: the worker lists the request as scheduled
	// (revokeat.go); its result comes at not_before.
	scheduled *ledger.ScheduledRequest
}

// label names the key of o as revoke prints it: the key ID as given or,
// for a leaked key, the key the result names, else the PEM's fingerprint.
func (o *outcome) label() string {
	switch {
	case o.leaked == nil:
		return o.keyID
	case o.result != nil && o.result.APIKeyID != "":
		return o.result.APIKeyID
	}
	return o.leakedFingerprint()
}

// leakedFingerprint is the fingerprint of a leaked key as the result
// states it, or as computed here when there is no result (or an older
// worker's, without one).
func (o *outcome) leakedFingerprint() string {
	if o.result != nil && o.result.LeakedKeyFingerprint != "" {
		return o.result.LeakedKeyFingerprint
	}
	return o.fingerprint
}

// printRevocations is reportRevocations of one request per key, without
// waiting for confirmations: the sandbox's demo.
func printRevocations(ctx context.Context, nc *nats.Conn, cfg Config, keyIDs []string, stdout, stderr io.Writer) error {
	return reportRevocations(ctx, nc, cfg, cliRequests(keyIDs), nil, stdout, stderr)
}

// reportRevocations publishes the revocations, waits for them and prints
// one line (or document) per request. It fails with exit status 1 unless
// every key ended revoked or already_revoked, and otherwise with exit
// status 3 if a key was not in the account (unless cfg.IgnoreNotFound).
//
// With a logger (a command's, not the sandbox's demo) and in text, it then
// waits for the confirmation of every revoked key and prints it (see
// printConfirmations). Everything happens within cfg.Timeout.
func reportRevocations(ctx context.Context, nc *nats.Conn, cfg Config, reqs []revocation, logger *slog.Logger, stdout, stderr io.Writer) error {
	wctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	outcomes, err := requestRevocations(wctx, nc, cfg, reqs)
	if err != nil {
		return refusal(ctx, err)
	}
	if err := refusal(ctx, nil); err != nil { // a refused subscription: the outcomes never came
		return err
	}
	// ctx itself ended (Ctrl-C, SIGTERM): not the --timeout.
	stopped := interrupted(ctx)
	failed, notFound := false, false
	for _, o := range outcomes {
		missing := o.result != nil && notInAccount(o.result) && !cfg.IgnoreNotFound
		key := cell(o.label())
		switch {
		case o.result == nil && o.scheduled != nil:
			printScheduled(stdout, cfg, o)
		case o.result == nil:
			printMissing(o, cfg, stopped, stdout, stderr)
		case cfg.JSON:
			fmt.Fprintf(stdout, "%s\n", events.EscapeJSON(o.doc))
			if missing {
				fmt.Fprintf(stderr, "revoker revoke: %s: %s\n", key, notFoundHint)
			}
		case o.result.Error != nil:
			fmt.Fprintf(stdout, "%s %s %s: %s\n", key, cell(string(o.result.Outcome)), cell(string(o.result.Error.Code)), events.Sanitize(o.result.Error.Message))
		case missing:
			fmt.Fprintf(stdout, "%s %s (%s)\n", key, cell(string(o.result.Outcome)), notFoundHint)
		default:
			fmt.Fprintf(stdout, "%s %s\n", key, cell(string(o.result.Outcome)))
		}
		if fp := o.leakedFingerprint(); o.leaked != nil && !cfg.JSON && fp != "" && fp != key {
			fmt.Fprintf(stdout, "%s leaked_key_fingerprint=%s\n", key, cell(fp))
		}
		failed = failed || o.result == nil && o.scheduled == nil || o.result != nil && !o.result.Outcome.Succeeded()
		notFound = notFound || missing
	}
	if stopped && failed { // some outcomes never came
		fmt.Fprintln(stderr, "revoker revoke: interrupted")
		return exitError{interruptStatus(ctx)}
	}
	if logger != nil && !cfg.JSON {
		printConfirmations(wctx, cfg, outcomes, logger, stdout)
	}
	switch {
	case failed:
		return exitError{exitFailed}
	case notFound:
		return exitError{exitNotFound}
	}
	return nil
}

// received is a result document and what it says.
type received struct {
	res events.Result
	doc []byte
}

// requestRevocations subscribes to the results first, then publishes one
// request per key, and waits until every outcome arrived or cfg.Timeout.
//
// A result is matched by data.request_seq, the stream sequence JetStream
// acknowledged for the request: anyone may publish a request claiming the
// same id, but never under the same sequence.
func requestRevocations(ctx context.Context, nc *nats.Conn, cfg Config, reqs []revocation) ([]*outcome, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	signer, err := newRequestSigner(cfg.SignerSeed)
	if err != nil {
		return nil, err
	}
	defer signer.wipe()
	outcomes := make([]*outcome, len(reqs))
	for i, r := range reqs {
		outcomes[i] = &outcome{revocation: r}
	}

	var (
		mu        sync.Mutex
		bySeq     = make(map[uint64]*outcome, len(reqs))
		early     = map[uint64]received{} // results that came before their request's ack; nil once all are published
		remaining = len(reqs)
		allDone   = make(chan struct{})
	)
	done := func() { // with mu held
		if remaining--; remaining == 0 {
			close(allDone)
		}
	}
	deliver := func(o *outcome, r received) { // with mu held
		if o.result != nil { // a repeat
			return
		}
		o.result, o.doc = &r.res, r.doc
		if o.scheduled == nil {
			done()
		}
	}
	onResult := func(m *nats.Msg) {
		doc, err := events.ResultDoc(m.Header, m.Data)
		if err != nil {
			return
		}
		res, err := events.ParseResult(doc)
		if err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		r := received{res, doc}
		if o := bySeq[res.RequestSeq]; o != nil {
			deliver(o, r)
		} else if _, seen := early[res.RequestSeq]; early != nil && !seen {
			early[res.RequestSeq] = r
		}
	}
	// A request's outcome is stored on the results subjects, or, when the
	// worker could not trust its id (it failed a check, or the id already
	// names a request for another key), on the untrusted rejections'.
	for _, subject := range []string{cfg.ResultsSubject + ".>", provision.UntrustedSubject + ".>"} {
		sub, err := nc.Subscribe(subject, onResult)
		if err != nil {
			return nil, fmt.Errorf("subscribing to %s: %w", subject, err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	if err := nc.Flush(); err != nil {
		return nil, err
	}

	if len(reqs) == 0 {
		close(allDone)
	}
	for _, o := range outcomes {
		if ctx.Err() != nil {
			break // interrupted or out of time: the rest stay unsent
		}
		msg, err := newRequestMsg(cfg, o.revocation, signer)
		if err != nil {
			return nil, err
		}
		seq, err := publishRequest(ctx, js, cfg, msg)
		clear(msg.Data) // it may hold a leaked key
		if err != nil && ctx.Err() != nil {
			break // interrupted or out of time: the rest stay unsent
		}
		if err != nil {
			return nil, publishError(nc, cfg, o, err)
		}
		mu.Lock()
		o.seq = seq
		bySeq[seq] = o
		if r, ok := early[seq]; ok {
			deliver(o, r)
		}
		mu.Unlock()
	}
	mu.Lock()
	early = nil
	mu.Unlock()

	watchCtx, stopWatching := context.WithCancel(ctx)
	var watching sync.WaitGroup
	if !cfg.At.IsZero() {
		seqs := make(map[*outcome]uint64, len(bySeq))
		for seq, o := range bySeq {
			seqs[o] = seq
		}
		watching.Go(func() {
			watchSchedules(watchCtx, js, &mu, seqs, func(o *outcome, s ledger.ScheduledRequest) {
				mu.Lock()
				defer mu.Unlock()
				if o.result == nil && o.scheduled == nil {
					o.scheduled = &s
					done()
				}
			})
		})
	}
	select {
	case <-allDone:
	case <-ctx.Done():
	}
	stopWatching()
	watching.Wait()
	mu.Lock()
	defer mu.Unlock()
	snapshot := make([]*outcome, len(outcomes))
	for i, o := range outcomes {
		c := *o
		snapshot[i] = &c
	}
	return snapshot, nil
}

// ackGrace is how long a publish already sent may wait for its
// acknowledgement after the command was interrupted or timed out: the
// answer then says whether the request was stored, not a guess.
const ackGrace = 2 * time.Second

// publishRequest stores msg in the requests stream and returns its
// sequence there. A duplicate is an error: no other message should hold the
// unpredictable id of msg, and the stream dropped msg for it.
func publishRequest(ctx context.Context, js jetstream.JetStream, cfg Config, msg *nats.Msg) (uint64, error) {
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(ackGrace, cancel) })
	defer stop()
	ack, err := js.PublishMsg(pctx, msg)
	switch {
	case err != nil:
		return 0, err
	case ack.Stream != cfg.RequestsStream:
		return 0, fmt.Errorf("stored in stream %s, not %s", ack.Stream, cfg.RequestsStream)
	case ack.Duplicate:
		return 0, fmt.Errorf("dropped by %s as a duplicate: another message already holds its Nats-Msg-Id", ack.Stream)
	}
	return ack.Sequence, nil
}

// publishError is why o's request could not be published: JetStream is
// off, no stream stores the requests subject, or err as it is.
func publishError(nc *nats.Conn, cfg Config, o *outcome, err error) error {
	if off := explainJetStream(nc, err); isJetStreamOff(off) {
		return off
	}
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		return fmt.Errorf("publishing request %s (%s): no JetStream stream stores %s: \"revoker run\" creates %s when it starts (or create it as deploy/README.md shows)",
			o.requestID, o.label(), cfg.RequestsSubject, cfg.RequestsStream)
	}
	return fmt.Errorf("publishing request %s (%s): %w", o.requestID, o.label(), err)
}

// newRequestMsg is the request message of r, in the plain form, signed by
// signer (if any) and under a Nats-Msg-Id nobody can predict. The caller
// clears msg.Data once published: it holds the leaked key of r, if any.
func newRequestMsg(cfg Config, r revocation, signer *requestSigner) (*nats.Msg, error) {
	fields := map[string]any{
		"id":           r.requestID,
		"reason":       cfg.Reason,
		"requested_by": cfg.RequestedBy,
		"source":       cfg.Source,
		"requested_at": time.Now().UTC().Format(time.RFC3339Nano),
	}
	if r.keyID != "" {
		fields["api_key_id"] = r.keyID
	}
	if cfg.CancelOrdersRequest {
		fields["cancel_orders"] = true
	}
	if !cfg.At.IsZero() {
		fields["not_before"] = cfg.At.Format(time.RFC3339Nano)
	}
	body, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	if r.leaked != nil {
		body = withLeakedKey(body, r.leaked)
	}
	msg := nats.NewMsg(cfg.RequestsSubject)
	msg.Data = body
	signature, err := signer.sign(msg)
	if err != nil {
		clear(body)
		return nil, err
	}
	msg.Header.Set(jetstream.MsgIDHeader, requestMsgID(signature))
	return msg, nil
}

// requestMsgID is a request's Nats-Msg-Id. No signature covers that header,
// so it must be one nobody can predict: whoever publishes a message id first
// makes the requests stream drop the other message as a duplicate. A signed
// request's is derived from its signature, so a replay of it is still
// dropped; any other's is random.
func requestMsgID(signature string) string {
	if signature == "" {
		return rand.Text()
	}
	sum := sha256.Sum256([]byte(signature))
	return hex.EncodeToString(sum[:])
}
