package worker

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/confirm"
	"github.com/revoker/revoker/worker/credential"
	"github.com/revoker/revoker/worker/fleet"
	"github.com/revoker/revoker/worker/ledger"
	"github.com/revoker/revoker/worker/provision"
)

// Kalshi is what the worker needs of Kalshi's API. *kalshi.Client is one.
// Errors are classified with the kalshi package's IsNotFound, IsTransient
// and RetryAfter.
type Kalshi interface {
	DeleteAPIKey(ctx context.Context, apiKeyID string) error
	ListAPIKeys(ctx context.Context) ([]kalshi.APIKey, error)
	// As is the same API signed with another key: a leaked key being
	// identified, deleting itself, or shown to be dead.
	As(keyID string, key crypto.Signer) (*kalshi.Client, error)
	// CancelOrders cancels resting orders: those of subaccount *subaccount,
	// or of every subaccount when nil (cancel_orders, contain.go).
	CancelOrders(ctx context.Context, subaccount *int) (int, error)
}

// Worker consumes revoke requests and stores one result for each.
type Worker struct {
	js  jetstream.JetStream
	del Kalshi
	cfg Config

	keys      keyLocks
	ledger    *ledger.Ledger       // set by the first bind, before any handler starts
	confirms  *confirm.Revocations // set by New
	cred      *credential.Gate     // see gate
	credOnce  sync.Once
	fleet     *fleet.Replica // see replica
	fleetOnce sync.Once
	ackWait   atomic.Int64 // the bound consumer's ack wait, in nanoseconds
	sched     schedState   // the requests stream's max age, for not_before (schedule.go)

	bound          atomic.Bool   // consumer bound and pulling
	credentialGone chan struct{} // closed once the worker deleted its own key
	goneOnce       sync.Once
	handlers       sync.WaitGroup
}

// New returns a Worker; it does not connect or provision.
func New(js jetstream.JetStream, del Kalshi, cfg Config) (*Worker, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("worker configuration: %w", err)
	}
	w := &Worker{
		js:             js,
		del:            del,
		cfg:            cfg,
		credentialGone: make(chan struct{}),
	}
	w.ackWait.Store(int64(cfg.AckWait))
	w.confirms = w.confirmations()
	return w, nil
}

// keepAliveInterval is how often a busy request is reported in progress:
// three times per ack wait of the consumer actually bound.
func (w *Worker) keepAliveInterval() time.Duration {
	return time.Duration(w.ackWait.Load()) / 3
}

// Ready returns nil when the worker can take requests: connected, bound to
// its consumer, and still holding a credential.
func (w *Worker) Ready() error {
	select {
	case <-w.credentialGone:
		return errors.New("the worker revoked its own key and stopped consuming")
	default:
	}
	if s := w.js.Conn().Status(); s != nats.CONNECTED {
		return fmt.Errorf("nats connection is %s", s)
	}
	if !w.bound.Load() {
		return fmt.Errorf("not bound to consumer %s on stream %s", w.cfg.Consumer, w.cfg.RequestsStream)
	}
	_, err := w.gate().State()
	return err
}

// Run pulls and processes requests until ctx is cancelled, then drains:
// it stops pulling, hands back what arrives afterwards, lets in-flight
// requests finish (within Config.DrainTimeout) and returns nil. It returns
// an error at once if the streams, consumer or ledger it binds to are set
// up in a way that breaks a guarantee (see provision.Check).
func (w *Worker) Run(ctx context.Context) error {
	log := w.cfg.Logger
	// Handlers outlive ctx by the drain timeout so they can publish and ack.
	work, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()

	w.reportRate()
	// The others hear what this replica holds until its drain ends.
	defer w.replica().Start(context.WithoutCancel(ctx))()
	credCtx, stopCred := context.WithCancel(ctx)
	var background sync.WaitGroup
	background.Go(func() { w.gate().Watch(credCtx) })
	background.Go(func() { w.confirms.Run(credCtx) })
	err := w.pullLoop(ctx, work)
	stopCred()
	background.Wait()
	w.bound.Store(false)
	w.cfg.Metrics.Ready.Set(0)
	if err != nil {
		return err
	}

	drained := make(chan struct{})
	go func() { w.handlers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(w.cfg.DrainTimeout):
		log.Warn("drain timeout: abandoning in-flight requests, they will be redelivered", "timeout", w.cfg.DrainTimeout)
		cancelHandlers()
		<-drained
	}
	log.Info("worker stopped")
	return nil
}

// infoRefresh is how often the consumer's state is read: the pending gauge
// is at most this old, and a vanished consumer is noticed this soon.
const infoRefresh = 2 * time.Second

// pullLoop fetches only as many messages as there are free slots, so no
// message waits in this process long enough to be redelivered elsewhere.
// ctx ends the loop (shutdown); work is the handlers' context, which outlives
// ctx until the drain deadline so that they can store results and ack.
func (w *Worker) pullLoop(ctx, work context.Context) error {
	log := w.cfg.Logger
	slots := make(chan struct{}, w.cfg.Concurrency)
	var cons jetstream.Consumer
	retry := newRebindBackoff()
	lastInfo := time.Time{}
	for ctx.Err() == nil {
		if w.revokedOwnKey() {
			<-ctx.Done()
			return nil
		}
		if cons == nil {
			c, err := w.bind(ctx)
			if err != nil {
				w.setBound(false)
				wait := retry.NextBackOff()
				log.Warn("cannot bind to the consumer; retrying", "err", err, "in", wait)
				sleep(ctx, wait)
				continue
			}
			if w.ledger == nil {
				if err := provision.Check(ctx, w.js, w.cfg.Provisioning()); err != nil {
					return err
				}
				kv, err := w.js.KeyValue(ctx, ledger.Bucket)
				if err != nil {
					log.Warn("cannot open the ledger; retrying", "bucket", ledger.Bucket, "err", err)
					sleep(ctx, retry.NextBackOff())
					continue
				}
				w.ledger = ledger.New(kv, w.cfg.Metrics.Ledger)
			}
			if info := c.CachedInfo(); info != nil && info.Config.AckWait > 0 {
				w.ackWait.Store(int64(info.Config.AckWait))
			}
			cons = c
			retry.Reset()
			w.setBound(true)
			log.Info("bound to consumer", "stream", w.cfg.RequestsStream, "consumer", w.cfg.Consumer)
		}
		if time.Since(lastInfo) > infoRefresh {
			lastInfo = time.Now()
			if !w.refreshInfo(ctx, cons) {
				cons = nil
				continue
			}
		}

		if changed, err := w.gate().State(); err != nil {
			// Not one request while Kalshi has not accepted the credential.
			select {
			case <-changed:
			case <-ctx.Done():
			}
			continue
		}

		// Take one slot (waiting if all are busy), then every other free one.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		n := 1
	more:
		for n < cap(slots) {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		if w.revokedOwnKey() {
			release(slots, n)
			continue
		}
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(w.cfg.PullWait))
		if err != nil {
			release(slots, n)
			if w.pullFailed(ctx, err) {
				cons = nil
			}
			continue
		}
		for msg := range batch.Messages() {
			n--
			if ctx.Err() != nil || w.revokedOwnKey() {
				// Arrived after shutdown began, or after the credential went:
				// hand it straight back.
				_ = msg.NakWithDelay(0)
				release(slots, 1)
				continue
			}
			w.handlers.Add(1)
			unhold := w.replica().Hold(msg.Reply())
			go func() {
				defer w.handlers.Done()
				defer release(slots, 1)
				defer unhold()
				w.handle(work, ctx, msg)
			}()
		}
		release(slots, n)
		if err := batch.Error(); err != nil && w.pullFailed(ctx, err) {
			cons = nil
		}
	}
	return nil
}

// bind finds the consumer, first creating what is missing when
// provisioning.
func (w *Worker) bind(ctx context.Context) (jetstream.Consumer, error) {
	// A rebind asks a cluster that may be electing leaders after a node
	// loss: an API request then goes unanswered until its timeout, and a
	// short one retried finds the new leader seconds sooner.
	timeout := 10 * time.Second
	if w.ledger != nil {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return provision.Bind(ctx, w.js, w.cfg.Provisioning())
}

// pullFailed logs a failed pull, waits a little, and reports whether the
// consumer must be bound again.
func (w *Worker) pullFailed(ctx context.Context, err error) (rebind bool) {
	if ctx.Err() != nil {
		return false
	}
	rebind = errors.Is(err, jetstream.ErrConsumerDeleted) ||
		errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, nats.ErrNoResponders)
	w.cfg.Logger.Warn("pull failed", "err", err, "rebind", rebind)
	if rebind {
		w.setBound(false)
	}
	sleep(ctx, 250*time.Millisecond)
	return rebind
}

// refreshInfo reads the consumer's state for the pending gauge and notices
// a consumer that vanished while we were idle or disconnected.
func (w *Worker) refreshInfo(ctx context.Context, cons jetstream.Consumer) bool {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := cons.Info(ictx)
	switch {
	case err == nil:
		w.cfg.Metrics.Pending.Set(float64(info.NumPending))
		if f, err := w.ledger.Fill(ictx); err == nil {
			w.cfg.Metrics.LedgerFill.Set(f)
		}
		w.reportRate() // follows budget refreshes and throttle recovery
		return true
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		w.cfg.Logger.Warn("the consumer disappeared; binding again", "consumer", w.cfg.Consumer)
		w.setBound(false)
		return false
	default:
		return true // transient: the next pull tells more
	}
}

func (w *Worker) setBound(ok bool) {
	w.bound.Store(ok)
	if ok && w.Ready() == nil {
		w.cfg.Metrics.Ready.Set(1)
	} else {
		w.cfg.Metrics.Ready.Set(0)
	}
}

func (w *Worker) revokedOwnKey() bool {
	select {
	case <-w.credentialGone:
		return true
	default:
		return false
	}
}

// selfRevoked stops consumption for good: the credential is gone.
func (w *Worker) selfRevoked() {
	w.goneOnce.Do(func() {
		close(w.credentialGone)
		w.cfg.Metrics.Ready.Set(0)
		w.cfg.Logger.Error("the worker revoked its own API key: it stops consuming and reports not ready; restart it with a new key")
	})
}

func release(slots chan struct{}, n int) {
	for ; n > 0; n-- {
		<-slots
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// reportRate shows the delete budget in force; -1 means unlimited.
func (w *Worker) reportRate() {
	r := w.cfg.Limiter.Rate()
	if math.IsInf(r, 1) {
		r = -1
	}
	w.cfg.Metrics.Rate.Set(r)
}

func newRebindBackoff() backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 250 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = 0
	return b
}
