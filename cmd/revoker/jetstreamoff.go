package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Every command but keys needs JetStream: the requests, the results and the
// ledger live there. A NATS server without it answers no JetStream call, and
// nats.go reports that as "no responders" or "no response from stream",
// which names neither the cause nor the fix. jetStreamOffError does.

// jetStreamOffError says that the NATS server at url has no JetStream (or,
// with account, none for this user's account), and how to turn it on.
type jetStreamOffError struct {
	url     string
	account bool
}

func (e *jetStreamOffError) Error() string {
	if e.account {
		return fmt.Sprintf("JetStream is not enabled for this user's account on the NATS server at %s: give the account jetstream: enabled in the server's accounts config", e.url)
	}
	return fmt.Sprintf("JetStream is not enabled on the NATS server at %s: start nats-server with -js / jetstream {} in its config", e.url)
}

func (e *jetStreamOffError) Unwrap() error {
	if e.account {
		return jetstream.ErrJetStreamNotEnabledForAccount
	}
	return jetstream.ErrJetStreamNotEnabled
}

// explainJetStream returns err, or a *jetStreamOffError in its place when
// err is the failure of a JetStream call because JetStream is off where nc
// is connected. The server may say so; otherwise nobody answering a
// JetStream call means it only when the server says, in its INFO, that it
// has no JetStream: in a cluster or behind a leaf node another server may
// serve the API, and with JetStream on, a publish nobody answers is one no
// stream stores.
func explainJetStream(nc *nats.Conn, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return &jetStreamOffError{url: connectedURL(nc), account: true}
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return &jetStreamOffError{url: connectedURL(nc)}
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		if on, _ := nc.ConnectedServerJetStream(); !on && nc.IsConnected() {
			return &jetStreamOffError{url: connectedURL(nc)}
		}
	}
	return err
}

// isJetStreamOff reports whether err says JetStream is off.
func isJetStreamOff(err error) bool {
	var off *jetStreamOffError
	return errors.As(err, &off)
}

// watchJetStream is run's: the worker retries binding for as long as it
// takes, and its warnings name only the symptom. So each time nc connects
// to a server, it looks up stream (a call the worker's NATS user may make)
// and, if that shows JetStream off, says so once, with the fix. It returns
// when ctx ends.
func watchJetStream(ctx context.Context, nc *nats.Conn, stream string, logger *slog.Logger) {
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	judged := "" // the server last judged, by its ID
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if id := nc.ConnectedServerId(); id != "" && id != judged {
			lctx, cancel := context.WithTimeout(ctx, natsDialTimeout)
			_, err := js.Stream(lctx, stream)
			cancel()
			if err = explainJetStream(nc, err); isJetStreamOff(err) {
				logger.Error(err.Error() + "; revoker keeps retrying until it is")
			}
			if ctx.Err() == nil {
				judged = id
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
