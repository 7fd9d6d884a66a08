package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Deleter deletes one Kalshi API key. *kalshi.Client is one. Errors are
// classified with the kalshi package's IsNotFound, IsTransient and
// RetryAfter.
type Deleter interface {
	DeleteAPIKey(ctx context.Context, apiKeyID string) error
}

// Worker consumes revoke requests and stores one result for each.
type Worker struct {
	js  jetstream.JetStream
	del Deleter
	cfg Config

	keys    keyLocks
	pending *resultCache

	bound          atomic.Bool   // consumer bound and pulling
	credentialGone chan struct{} // closed once the worker deleted its own key
	goneOnce       sync.Once
	handlers       sync.WaitGroup
}

// New returns a Worker; it does not connect or provision.
func New(js jetstream.JetStream, del Deleter, cfg Config) (*Worker, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("worker configuration: %w", err)
	}
	return &Worker{
		js:             js,
		del:            del,
		cfg:            cfg,
		pending:        newResultCache(10_000, cfg.MaxRetry+time.Hour),
		credentialGone: make(chan struct{}),
	}, nil
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
	return nil
}

// Run pulls and processes requests until ctx is cancelled, then drains:
// it stops pulling, hands back what arrives afterwards, lets in-flight
// requests finish (within Config.DrainTimeout) and returns nil.
func (w *Worker) Run(ctx context.Context) error {
	log := w.cfg.Logger
	// Handlers outlive ctx by the drain timeout so they can publish and ack.
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()

	w.reportRate()
	w.pullLoop(ctx, handlerCtx)
	w.bound.Store(false)
	w.cfg.Metrics.Ready.Set(0)

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

// pullLoop fetches only as many messages as there are free slots, so no
// message waits in this process long enough to be redelivered elsewhere.
func (w *Worker) pullLoop(ctx, handlerCtx context.Context) {
	log := w.cfg.Logger
	slots := make(chan struct{}, w.cfg.Concurrency)
	var cons jetstream.Consumer
	retry := newRebindBackoff()
	lastInfo := time.Time{}
	for ctx.Err() == nil {
		select {
		case <-w.credentialGone:
			<-ctx.Done()
			return
		default:
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
			cons = c
			retry.Reset()
			w.setBound(true)
			log.Info("bound to consumer", "stream", w.cfg.RequestsStream, "consumer", w.cfg.Consumer)
		}
		if time.Since(lastInfo) > 10*time.Second {
			lastInfo = time.Now()
			if !w.refreshInfo(ctx, cons) {
				cons = nil
				continue
			}
		}

		// Take one slot (waiting if all are busy), then every other free one.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
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
			if ctx.Err() != nil {
				// Arrived after shutdown began: hand it straight back.
				_ = msg.NakWithDelay(0)
				release(slots, 1)
				continue
			}
			w.handlers.Add(1)
			go func() {
				defer w.handlers.Done()
				defer release(slots, 1)
				w.handle(ctx, handlerCtx, msg)
			}()
		}
		release(slots, n)
		if err := batch.Error(); err != nil && w.pullFailed(ctx, err) {
			cons = nil
		}
	}
}

// bind finds the consumer, first creating what is missing when
// provisioning.
func (w *Worker) bind(ctx context.Context) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if w.cfg.Provision {
		if err := provisionStreams(ctx, w.js, w.cfg); err != nil {
			return nil, err
		}
	}
	return bindConsumer(ctx, w.js, w.cfg, w.cfg.Provision)
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
