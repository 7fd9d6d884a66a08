package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Client asks the console of whichever worker answers first.
type Client struct {
	nc *nats.Conn
	// Timeout bounds one request; default 30s (the worker may wait for its
	// Kalshi budget, then for Kalshi). Health uses at most 5s.
	Timeout time.Duration
}

// NewClient returns a client that asks over nc.
func NewClient(nc *nats.Conn) *Client { return &Client{nc: nc} }

// NoWorkerError says that no worker answered on Subject: none runs, or this
// NATS user may not ask it.
type NoWorkerError struct {
	Subject string
	Cause   error // nats.ErrNoResponders, or the context's error
}

func (e *NoWorkerError) Error() string {
	why := "no worker subscribes to it"
	if !errors.Is(e.Cause, nats.ErrNoResponders) {
		why = "no answer: " + e.Cause.Error()
	}
	return fmt.Sprintf("no revoker worker answered on %s (%s): start \"revoker run\", or check that this NATS user may publish to %s",
		e.Subject, why, e.Subject)
}

func (e *NoWorkerError) Unwrap() error { return e.Cause }

// Error is an endpoint's refusal: a micro error with its code (400, 500,
// 503) and message.
type Error struct {
	Subject string
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("the worker refused %s (%s): %s", e.Subject, e.Code, e.Message)
}

// Keys lists the account's keys as the worker sees them.
func (c *Client) Keys(ctx context.Context) (KeysReply, error) {
	var r KeysReply
	err := c.ask(ctx, SubjectKeys, struct{}{}, &r, 0)
	return r, err
}

// Plan asks for the plan of a dry run (req.Keys, split into requests of at
// most MaxKeys and joined again) or of --all.
func (c *Client) Plan(ctx context.Context, req PlanRequest) (PlanReply, error) {
	if req.All || len(req.Keys) <= MaxKeys {
		var r PlanReply
		err := c.ask(ctx, SubjectPlan, req, &r, 0)
		return r, err
	}
	var all PlanReply
	for start := 0; start < len(req.Keys); start += MaxKeys {
		part := req
		part.Keys = req.Keys[start:min(start+MaxKeys, len(req.Keys))]
		var r PlanReply
		if err := c.ask(ctx, SubjectPlan, part, &r, 0); err != nil {
			return PlanReply{}, err
		}
		all.Keys = append(all.Keys, r.Keys...)
		all.Guards, all.ListedAt = r.Guards, r.ListedAt
	}
	return all, nil
}

// Status asks what the worker knows of keys, MaxKeys at a time.
func (c *Client) Status(ctx context.Context, keys []string) (StatusReply, error) {
	var all StatusReply
	for start := 0; start < len(keys); start += MaxKeys {
		var r StatusReply
		if err := c.ask(ctx, SubjectStatus, StatusRequest{Keys: keys[start:min(start+MaxKeys, len(keys))]}, &r, 0); err != nil {
			return StatusReply{}, err
		}
		all.Keys = append(all.Keys, r.Keys...)
		all.ListedAt = r.ListedAt
	}
	return all, nil
}

// Health asks one replica for its health and the fleet's.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	err := c.ask(ctx, SubjectHealth, struct{}{}, &h, 5*time.Second)
	return h, err
}

func (c *Client) ask(ctx context.Context, subject string, req, reply any, limit time.Duration) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if limit > 0 {
		timeout = min(timeout, limit)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := c.nc.RequestWithContext(rctx, subject, body)
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return &NoWorkerError{Subject: subject, Cause: err}
	case err != nil:
		return fmt.Errorf("%s: %w", subject, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return &Error{Subject: subject, Code: code, Message: msg.Header.Get(micro.ErrorHeader)}
	}
	if err := json.Unmarshal(msg.Data, reply); err != nil {
		return fmt.Errorf("%s: the answer is not JSON: %w", subject, err)
	}
	return nil
}
