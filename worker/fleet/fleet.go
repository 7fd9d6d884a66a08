// Package fleet owns what the replicas of one consumer tell each other,
// apart from the rate budget (package worker/budget): what each holds, so
// that a silent one's deliveries are NAKed at once (failover.go, on
// revoker.fleet.held.<consumer>), and the one account listing the fleet
// shares (listing.go, on revoker.fleet.listing.<consumer>.<replica id>).
//
// A [Replica] is one worker's part in it. It knows the worker only through
// its [Config]: the NATS connection, the consumer's names, and a function
// that lists the account. Package worker imports this package, never the
// reverse.
package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/revoker/revoker/kalshi"
)

// Config is what a replica needs of the worker it belongs to.
type Config struct {
	// Conn is the worker's NATS connection; nil: a replica alone (unit
	// tests), which announces nothing and lists for itself.
	Conn           *nats.Conn
	RequestsStream string // the stream and durable consumer the fleet shares
	Consumer       string

	// List lists the account's keys once, within the retry budget of the
	// request stored at storedAt; stop ends it on shutdown.
	List func(ctx, stop context.Context, storedAt time.Time) ([]kalshi.APIKey, error)
	// Stopped is what a listing returns when stop ends while it waits for
	// another caller's.
	Stopped error
	// CutOff reports whether this replica has given up reaching Kalshi:
	// the lister then answers the others at once that it cannot list.
	CutOff func() bool
	// AckWait is the bound consumer's ack wait: after it JetStream
	// redelivers a dead replica's messages anyway.
	AckWait func() time.Duration
	Logger  *slog.Logger
}

// Replica is one worker's part in the fleet. Its methods are safe for
// concurrent use.
type Replica struct {
	cfg Config
	id  string // random, hex

	mu    sync.Mutex
	held  map[string]struct{} // ack subjects of the deliveries in hand
	peers map[string]peer     // by id

	listing listing
	// listerFailed: when a question to the fleet's lister last went
	// without a good answer (unix nanoseconds).
	listerFailed atomic.Int64
}

// New returns a replica of a fleet; Start makes it take part.
func New(cfg Config) *Replica {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &Replica{cfg: cfg, id: hex.EncodeToString(b), held: make(map[string]struct{}), peers: make(map[string]peer)}
}

// Start announces what this replica holds, NAKs what a silent one held, and
// answers the others' questions while this replica is the lister, until
// stop is called; stop waits for all of it to end.
func (r *Replica) Start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var done sync.WaitGroup
	done.Go(func() { r.failoverLoop(ctx) })
	stopListing, err := r.serveListing(ctx)
	if err != nil {
		r.cfg.Logger.Warn("cannot list the account for the other replicas; each lists for itself", "err", err)
		stopListing = func() {}
	}
	return func() { cancel(); stopListing(); done.Wait() }
}
