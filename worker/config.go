package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/budget"
	"github.com/revoker/revoker/worker/contain"
	"github.com/revoker/revoker/worker/metrics"
	"github.com/revoker/revoker/worker/provision"
)

// Defaults of Config, which cmd/revoker shows as the defaults of its flags.
const (
	DefaultRequestsSubject = "keys.revoke.requests"
	DefaultResultsSubject  = "keys.revoke.results"
	DefaultRequestsStream  = "KEY_REVOKE_REQUESTS"
	DefaultResultsStream   = "KEY_REVOKE_RESULTS"
	DefaultConsumer        = "revoker"
	DefaultReplicas        = 1
	DefaultConcurrency     = 8
	DefaultMaxRetry        = 15 * time.Minute
	DefaultAttemptTimeout  = 10 * time.Second
	DefaultLeakedMissTTL   = 10 * time.Minute
	DefaultConfirmGiveUp   = 24 * time.Hour
	DefaultMaxSchedule     = 30 * 24 * time.Hour
	DefaultScheduleRecheck = time.Hour
)

// Config says where the worker reads and writes and how it behaves. The zero
// value of every field means the default named in its comment, except
// Provision, which must be asked for.
type Config struct {
	RequestsSubject string // default "keys.revoke.requests"
	ResultsSubject  string // prefix, the outcome is appended; default "keys.revoke.results"
	RequestsStream  string // default "KEY_REVOKE_REQUESTS"
	ResultsStream   string // default "KEY_REVOKE_RESULTS"
	Consumer        string // durable name shared by all replicas; default "revoker"
	// ResultsMode is how results (trusted and untrusted) are laid out in their
	// messages: events.Structured (the default) or events.Binary.
	ResultsMode events.ResultMode

	// Provision creates missing streams and the consumer, and recreates the
	// consumer if it disappears. Off: the worker only binds.
	Provision bool
	Replicas  int // stream replicas when provisioning; default 1

	Concurrency    int           // deletes in flight; default 8
	MaxRetry       time.Duration // retry budget from when the request was stored; default 15m
	AttemptTimeout time.Duration // per HTTP attempt; default 10s
	MaxDeliveries  int           // the delivery that gives up with failed/max_deliveries; default 10
	AckWait        time.Duration // ack wait of a consumer provisioning creates; default 10s
	RetryInitial   time.Duration // first backoff interval; default 250ms
	RetryMaxDelay  time.Duration // longest backoff interval; default 30s
	RequeueDelay   time.Duration // first redelivery delay when a result cannot be stored; default 1s
	PullWait       time.Duration // how long one pull waits for messages; default 2s
	DrainTimeout   time.Duration // how long shutdown waits for in-flight requests; default 20s

	MaxSchedule     time.Duration // how far after it was stored a request's not_before may be; default 30 days (less if the requests stream keeps requests shorter)
	ScheduleRecheck time.Duration // longest a scheduled request rests in the stream between two deliveries; default 1h

	ConfirmDelay    time.Duration // from a revocation to the first check that the key is dead; default 1s
	ConfirmInterval time.Duration // at least this long between two such checks (each one GET /api_keys); default 5s
	ConfirmGiveUp   time.Duration // after this long from a revocation, an unconfirmed key is recorded as such and no longer checked; default 24h

	LeakedMissTTL time.Duration // how long a leaked key that matched no key is remembered (a repeat costs no call); default 10m

	CredentialRecheck time.Duration // how often Kalshi's acceptance of the credential is checked again; default 5m
	CredentialRetry   time.Duration // how soon after a failed check; default 15s

	SelfKeyID       string   // the key the worker signs with, refused unless AllowSelfRevoke
	AllowSelfRevoke bool     // allow deleting SelfKeyID; the worker then stops consuming
	ProtectedKeys   []string // key IDs never deleted
	Policy          Policy   // request authentication; nil accepts every valid request

	// CancelOrders is which orders a request with cancel_orders may cancel
	// (REVOKER_CANCEL_ORDERS); default contain.Off.
	CancelOrders contain.Scope

	Limiter *budget.Limiter  // shared delete budget; default unlimited
	Cancels *budget.Limiter  // budget of order cancels (the write bucket), in calls; default unlimited
	Metrics *metrics.Metrics // default: metrics nobody reads
	Logger  *slog.Logger     // default: discard
}

// Policy decides whether a decoded request may act, judged at storedAt,
// when JetStream stored it, so that every delivery of one message gets
// the same answer. A non-nil error becomes a rejected/unauthorized_request
// result carrying its text. *auth.Policy is one.
type Policy interface {
	AuthorizeAt(header map[string][]string, body []byte, req events.Request, storedAt time.Time) error
}

func (c *Config) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.RequestsSubject, DefaultRequestsSubject)
	def(&c.ResultsSubject, DefaultResultsSubject)
	def(&c.RequestsStream, DefaultRequestsStream)
	def(&c.ResultsStream, DefaultResultsStream)
	def(&c.Consumer, DefaultConsumer)
	if c.ResultsMode == "" {
		c.ResultsMode = events.Structured
	}
	defDur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defDur(&c.MaxRetry, DefaultMaxRetry)
	defDur(&c.AttemptTimeout, DefaultAttemptTimeout)
	defDur(&c.AckWait, 10*time.Second)
	defDur(&c.RetryInitial, 250*time.Millisecond)
	defDur(&c.RetryMaxDelay, 30*time.Second)
	defDur(&c.RequeueDelay, time.Second)
	defDur(&c.PullWait, 2*time.Second)
	defDur(&c.DrainTimeout, 20*time.Second)
	defDur(&c.ConfirmDelay, time.Second)
	defDur(&c.ConfirmInterval, 5*time.Second)
	defDur(&c.ConfirmGiveUp, DefaultConfirmGiveUp)
	defDur(&c.LeakedMissTTL, DefaultLeakedMissTTL)
	defDur(&c.MaxSchedule, DefaultMaxSchedule)
	defDur(&c.ScheduleRecheck, DefaultScheduleRecheck)
	defDur(&c.CredentialRecheck, 5*time.Minute)
	defDur(&c.CredentialRetry, 15*time.Second)
	// The guards compare canonical key IDs, whatever spelling was configured.
	c.SelfKeyID = events.CanonicalAPIKeyID(c.SelfKeyID)
	protected := make([]string, len(c.ProtectedKeys))
	for i, k := range c.ProtectedKeys {
		protected[i] = events.CanonicalAPIKeyID(k)
	}
	c.ProtectedKeys = protected
	if c.Replicas <= 0 {
		c.Replicas = DefaultReplicas
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxDeliveries <= 0 {
		c.MaxDeliveries = 10
	}
	if c.Limiter == nil {
		c.Limiter = budget.NewLimiter(0, 0)
	}
	if c.Cancels == nil {
		c.Cancels = budget.NewLimiter(0, 0)
	}
	if c.CancelOrders == "" {
		c.CancelOrders = contain.DefaultScope
	}
	if c.Metrics == nil {
		c.Metrics = metrics.New(nil)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Provisioning is what package provision needs of c, defaults applied: the
// names and sizes of the streams, consumer and buckets, and whether the
// worker creates what is missing.
func (c Config) Provisioning() provision.Config {
	c.setDefaults()
	return provision.Config{
		RequestsSubject: c.RequestsSubject,
		ResultsSubject:  c.ResultsSubject,
		RequestsStream:  c.RequestsStream,
		ResultsStream:   c.ResultsStream,
		Consumer:        c.Consumer,
		Replicas:        c.Replicas,
		MaxSchedule:     c.MaxSchedule,
		MaxRetry:        c.MaxRetry,
		AckWait:         c.AckWait,
		MaxDeliveries:   c.MaxDeliveries,
		Provision:       c.Provision,
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.PullWait < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("pull wait %v is shorter than 100ms", c.PullWait))
	}
	if c.AckWait < 3*time.Second {
		errs = append(errs, fmt.Errorf("ack wait %v is shorter than 3s", c.AckWait))
	}
	if _, err := events.ParseResultMode(string(c.ResultsMode)); err != nil {
		errs = append(errs, fmt.Errorf("results mode: %w", err))
	}
	if _, err := contain.ParseScope(string(c.CancelOrders)); err != nil {
		errs = append(errs, fmt.Errorf("cancel orders scope: %w", err))
	}
	if c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("stream replicas %d: JetStream allows at most 5", c.Replicas))
	}
	return errors.Join(errs...)
}
