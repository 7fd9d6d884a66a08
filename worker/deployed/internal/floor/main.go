// Command floor is the throughput floor of BenchmarkDeployedThroughput: the
// least any implementation of the operator contract must do per request,
// and nothing else. From Concurrency goroutines it pulls a request from the
// durable work-queue consumer, reads its id and API key ID, sends one DELETE
// with the kalshi client revoker uses, stores one result document on the
// results stream under Nats-Msg-Id = the request id and waits for
// JetStream's ack, then acks the request. No ledger, no policy, no retries,
// no metrics, no logs: it is a bound on what revoker can reach, not a
// worker.
//
// It reads NATS_URL, KALSHI_BASE_URL, KALSHI_API_KEY_ID,
// KALSHI_PRIVATE_KEY_PATH and REVOKER_CONCURRENCY, binds to the streams and
// consumer revoker provisions (worker.Default…), prints "ready" once bound
// and runs until SIGTERM or SIGINT. A request it cannot carry out ends it
// with an error: the benchmark expects every DELETE to succeed.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	conc, err := strconv.Atoi(os.Getenv("REVOKER_CONCURRENCY"))
	if err != nil || conc < 1 {
		return fmt.Errorf("REVOKER_CONCURRENCY %q", os.Getenv("REVOKER_CONCURRENCY"))
	}
	key, err := kalshi.LoadPrivateKey(os.Getenv("KALSHI_PRIVATE_KEY_PATH"))
	if err != nil {
		return err
	}
	client, err := kalshi.New(kalshi.Config{BaseURL: os.Getenv("KALSHI_BASE_URL"), KeyID: os.Getenv("KALSHI_API_KEY_ID"), PrivateKey: key})
	if err != nil {
		return err
	}
	nc, err := nats.Connect(os.Getenv("NATS_URL"), nats.Name("floor"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cons, err := js.Consumer(ctx, worker.DefaultRequestsStream, worker.DefaultConsumer)
	if err != nil {
		return err
	}
	// conc goroutines carry the requests; the consumer's callback hands
	// each one over, waiting while all are busy, with up to conc more on
	// their way. A short pull expiry bounds a stall of the pull's
	// bookkeeping to two seconds.
	work, quit := make(chan jetstream.Msg), make(chan struct{})
	errc := make(chan error, conc)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for msg := range work {
				if err := carry(ctx, js, client, msg); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		select {
		case work <- msg:
		case <-quit:
		}
	}, jetstream.PullMaxMessages(conc), jetstream.PullExpiry(2*time.Second))
	if err != nil {
		return err
	}
	fmt.Println("ready")
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	close(quit)
	cc.Stop()
	<-cc.Closed()
	close(work)
	wg.Wait()
	return err
}

// carry is one request: decode what the DELETE and the result need, delete,
// store the result, ack.
func carry(ctx context.Context, js jetstream.JetStream, client *kalshi.Client, msg jetstream.Msg) error {
	received := time.Now()
	meta, err := msg.Metadata()
	if err != nil {
		return err
	}
	var req struct { // what the DELETE and the result need
		ID          string `json:"id"`
		APIKeyID    string `json:"api_key_id"`
		Reason      string `json:"reason"`
		RequestedBy string `json:"requested_by"`
		Source      string `json:"source"`
	}
	if err := json.Unmarshal(msg.Data(), &req); err != nil {
		return fmt.Errorf("request %d: %w", meta.Sequence.Stream, err)
	}
	if err := client.DeleteAPIKey(ctx, req.APIKeyID); err != nil {
		return fmt.Errorf("request %s: %w", req.ID, err)
	}
	done := time.Now()
	doc, err := events.Result{
		RequestID: req.ID, RequestSeq: meta.Sequence.Stream, APIKeyID: req.APIKeyID,
		Outcome: events.Revoked, Attempts: 1, Deliveries: int(meta.NumDelivered), HTTPStatus: 204,
		Reason: req.Reason, RequestedBy: req.RequestedBy, Source: req.Source,
		ReceivedAt: received, CompletedAt: done, DurationMS: done.Sub(received).Milliseconds(),
	}.MarshalEvent()
	if err != nil {
		return err
	}
	m := nats.NewMsg(events.ResultSubject(worker.DefaultResultsSubject, events.Revoked))
	m.Data = doc
	m.Header.Set(jetstream.MsgIDHeader, req.ID)
	m.Header.Set(events.ContentTypeHeader, events.CloudEventsJSONType) // as the worker stores it
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(pctx, m); err != nil {
		return fmt.Errorf("request %s: storing the result: %w", req.ID, err)
	}
	return msg.Ack()
}
