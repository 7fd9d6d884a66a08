package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"golang.org/x/time/rate"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/budget"
	"github.com/revoker/revoker/worker/ledger"
)

// Lister lists the account's API keys: the worker's own Kalshi client.
type Lister interface {
	ListAPIKeys(ctx context.Context) ([]kalshi.APIKey, error)
}

// Config wires the console to the worker it runs beside.
type Config struct {
	Kalshi  Lister          // the worker's client, signed with its credential
	Limiter *budget.Limiter // the worker's budget; every Kalshi call waits for it. Nil: unlimited
	Guards  Guards          // the worker's guards

	// JS reads the ledger and the replica plan of Group (the consumer
	// name, default "revoker"); nil leaves both out.
	JS    jetstream.JetStream
	Group string

	Ready      func() error // the worker's readiness (nil: always ready)
	Credential func() error // whether Kalshi accepts the credential (nil: unknown, taken as accepted)

	Replica       string // this replica's name in the plan; default micro's instance id
	Version       string // the binary's version
	KalshiBaseURL string

	CallTimeout time.Duration // bounds one Kalshi call and its wait for the budget; default 10s
	// Account listings begin no more often than one per ListingInterval on
	// average, with bursts of up to ListingBurst (defaults 1s and 4): an
	// operator's commands in a row are answered at once, a flood costs
	// Kalshi one call per interval.
	ListingInterval time.Duration
	ListingBurst    int
	Logger          *slog.Logger // default: discard
}

// Service is the console while it runs.
type Service struct {
	cfg       Config
	nc        *nats.Conn
	svc       micro.Service
	slots     chan struct{}  // one per request being answered
	answering sync.WaitGroup // the requests being answered
	max       int            // the largest answer the connection may publish
	ctx       context.Context
	stop      context.CancelFunc

	mu       sync.Mutex
	last     *listingResult // the latest listing done
	inflight chan struct{}  // closed when the listing under way is done; nil when none is
	listings *rate.Limiter  // when the next listing may begin

	ledgerMu sync.Mutex
	ledger   *ledger.Ledger
}

// Start serves the console on nc until Stop. Its endpoints answer in
// micro's queue group, so one replica of the fleet answers each request.
func Start(nc *nats.Conn, cfg Config) (*Service, error) {
	if cfg.Kalshi == nil {
		return nil, errors.New("console: no Kalshi client")
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	if cfg.ListingInterval <= 0 {
		cfg.ListingInterval = time.Second
	}
	if cfg.ListingBurst <= 0 {
		cfg.ListingBurst = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Group == "" {
		cfg.Group = worker.DefaultConsumer
	}
	s := &Service{cfg: cfg, nc: nc, slots: make(chan struct{}, maxInFlight), max: int(nc.MaxPayload()),
		listings: rate.NewLimiter(rate.Every(cfg.ListingInterval), cfg.ListingBurst)}
	s.ctx, s.stop = context.WithCancel(context.Background())
	svc, err := micro.AddService(nc, micro.Config{
		Name:        ServiceName,
		Version:     semver(cfg.Version),
		Description: "revoker's operator console: the account's keys, plans, key status and the fleet's health, answered by the worker with its own Kalshi credential and guards",
		Metadata:    map[string]string{"revoker_version": cfg.Version},
		ErrorHandler: func(_ micro.Service, err *micro.NATSError) {
			cfg.Logger.Warn("console: NATS error", "subject", err.Subject, "err", err.Description)
		},
	})
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("console: %w", err)
	}
	s.svc = svc
	for _, e := range []struct {
		name, subject string
		h             func(context.Context, time.Time, []byte) (any, error)
	}{
		{"keys", SubjectKeys, s.keysEndpoint},
		{"plan", SubjectPlan, s.planEndpoint},
		{"status", SubjectStatus, s.statusEndpoint},
		{"health", SubjectHealth, s.healthEndpoint},
	} {
		if err := svc.AddEndpoint(e.name, s.handler(e.name, e.h), micro.WithEndpointSubject(e.subject)); err != nil {
			_ = svc.Stop()
			s.stop()
			return nil, fmt.Errorf("console: endpoint %s: %w", e.name, err)
		}
	}
	if nc.IsConnected() {
		// The endpoints answer once Start returns (the server has their
		// subscriptions); a connection still to be made subscribes later.
		_ = nc.FlushTimeout(5 * time.Second)
	}
	return s, nil
}

// Stop stops answering; requests being answered end at once (answered
// 503 if they were waiting for Kalshi).
func (s *Service) Stop() error {
	err := s.svc.Stop()
	s.stop()
	s.answering.Wait()
	return err
}

// Info is the service's micro info (name, id, endpoints).
func (s *Service) Info() micro.Info { return s.svc.Info() }

// replyError is an endpoint's refusal, answered as a micro error.
type replyError struct {
	code, msg string
}

func (e *replyError) Error() string { return e.msg }

func badRequest(format string, a ...any) error {
	return &replyError{CodeBadRequest, fmt.Sprintf(format, a...)}
}

func unavailable(format string, a ...any) error {
	return &replyError{CodeUnavailable, fmt.Sprintf(format, a...)}
}

// maxInFlight bounds the requests answered at once; more are refused with
// a 503 until some are done.
const maxInFlight = 64

// handler answers a request with h's value as JSON, or its error as a
// micro error. Requests are answered concurrently (up to maxInFlight), so
// that those waiting together share one account listing; a request is
// bounded in size and time, and a panic is answered, not fatal.
//
// The answer is published here rather than with micro's Respond: micro
// books a request's outcome once the handler returns, and this one returns
// at once. (micro's endpoint stats count requests, not their errors.)
func (s *Service) handler(name string, h func(context.Context, time.Time, []byte) (any, error)) micro.HandlerFunc {
	return func(req micro.Request) {
		arrived := time.Now()
		data, reply := req.Data(), req.Reply()
		if !strings.HasPrefix(reply, "_INBOX.") {
			// Nobody to answer, or a reply subject chosen to make the worker
			// publish its answer where it may write: a result, the ledger.
			return
		}
		select {
		case s.slots <- struct{}{}:
		default:
			s.respond(name, reply, nil, unavailable("the console is busy (%d requests in flight): try again shortly", maxInFlight))
			return
		}
		s.answering.Add(1)
		go func() {
			defer s.answering.Done()
			defer func() { <-s.slots }()
			defer func() {
				if p := recover(); p != nil {
					s.cfg.Logger.Error("console: endpoint panicked", "endpoint", name, "panic", fmt.Sprint(p))
					s.respond(name, reply, nil, errors.New("internal error"))
				}
			}()
			if len(data) > MaxRequestBytes {
				s.respond(name, reply, nil, badRequest("request of %d bytes: at most %d", len(data), MaxRequestBytes))
				return
			}
			ctx, cancel := context.WithTimeout(s.ctx, 2*s.cfg.CallTimeout+s.cfg.ListingInterval)
			defer cancel()
			v, err := h(ctx, arrived, data)
			s.respond(name, reply, v, err)
		}()
	}
}

// respond publishes v as JSON to reply, or err as a micro error: the
// headers Nats-Service-Error-Code and Nats-Service-Error (one line).
func (s *Service) respond(name, reply string, v any, err error) {
	msg := &nats.Msg{Subject: reply}
	if err == nil {
		if msg.Data, err = json.Marshal(v); err == nil && len(msg.Data) > s.max {
			err = &replyError{CodeInternal, fmt.Sprintf("the answer (%d bytes) exceeds the NATS server's max_payload (%d)", len(msg.Data), s.max)}
		}
	}
	if err != nil {
		var re *replyError
		if !errors.As(err, &re) {
			re = &replyError{CodeInternal, err.Error()}
		}
		s.cfg.Logger.Debug("console: request refused", "endpoint", name, "code", re.code, "err", re.msg)
		msg.Data = nil
		msg.Header = nats.Header{micro.ErrorCodeHeader: {re.code}, micro.ErrorHeader: {oneLine(re.msg)}}
	}
	if perr := s.nc.PublishMsg(msg); perr != nil {
		s.cfg.Logger.Debug("console: cannot answer", "endpoint", name, "err", perr)
	}
}

// decode reads a JSON request into v; an empty body is the zero request.
func decode(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("the request is not the JSON this endpoint takes: %s", oneLine(err.Error()))
	}
	return nil
}

// listing returns the account's keys from a listing that began after
// arrived, so that an answer is never older than its question. Listings
// are shared: every request waiting when one begins gets it, and one
// begins as often as ListingInterval and ListingBurst allow, signed with
// the worker's credential through its budget. However many requests come,
// the console costs Kalshi at most one call per interval (after a burst).
func (s *Service) listing(ctx context.Context, arrived time.Time) (listingResult, error) {
	for {
		s.mu.Lock()
		if r := s.last; r != nil && !r.started.Before(arrived) {
			s.mu.Unlock()
			return *r, r.err
		}
		next := s.inflight
		if next == nil {
			// Begin one, no sooner than the interval after the last began.
			next = make(chan struct{})
			s.inflight = next
			start := time.Now()
			start = start.Add(s.listings.ReserveN(start, 1).DelayFrom(start))
			s.answering.Add(1) // within a request's count: Stop waits for it too
			go s.list(start, next)
		}
		s.mu.Unlock()
		select {
		case <-next:
		case <-ctx.Done():
			return listingResult{}, unavailable("no account listing within the request's time: %v", ctx.Err())
		}
	}
}

// listingResult is one listing of the account's keys: when it began, and
// what it found.
type listingResult struct {
	keys    []kalshi.APIKey
	started time.Time
	err     error
}

// list makes the listing that begins at start and closes done. It runs on
// the service's context, not a request's: other requests wait for it.
func (s *Service) list(start time.Time, done chan struct{}) {
	defer s.answering.Done()
	r := &listingResult{started: start}
	defer func() {
		s.mu.Lock()
		s.last, s.inflight = r, nil
		s.mu.Unlock()
		close(done)
	}()
	if d := time.Until(start); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-s.ctx.Done():
			t.Stop()
			r.err = unavailable("the console is stopping")
			return
		case <-t.C:
		}
		r.started = time.Now()
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.CallTimeout)
	defer cancel()
	if s.cfg.Limiter != nil {
		if err := s.cfg.Limiter.Wait(ctx); err != nil {
			r.err = unavailable("the worker's Kalshi budget gave no turn within %v (a 429 pause, or every token in use): try again shortly", s.cfg.CallTimeout)
			return
		}
	}
	keys, err := s.cfg.Kalshi.ListAPIKeys(ctx)
	if err != nil {
		if s.cfg.Limiter != nil {
			budget.HeedAnswer(s.cfg.Limiter, err)
		}
		r.err = unavailable("the worker could not list the account's keys: %v", err)
		return
	}
	if keys == nil {
		keys = []kalshi.APIKey{}
	}
	r.keys = keys
}

func (s *Service) keysEndpoint(ctx context.Context, arrived time.Time, data []byte) (any, error) {
	var req struct{}
	if err := decode(data, &req); err != nil {
		return nil, err
	}
	l, err := s.listing(ctx, arrived)
	if err != nil {
		return nil, err
	}
	reply := KeysReply{Keys: make([]Key, len(l.keys)), SelfKeyID: s.cfg.Guards.SelfKeyID, ListedAt: l.started}
	for i, k := range l.keys {
		reply.Keys[i] = Key{ID: k.ID, Name: k.Name, Scopes: k.Scopes, Subaccount: k.Subaccount, Own: events.CanonicalAPIKeyID(k.ID) == s.cfg.Guards.SelfKeyID}
	}
	return reply, nil
}

func (s *Service) planEndpoint(ctx context.Context, arrived time.Time, data []byte) (any, error) {
	var req PlanRequest
	if err := decode(data, &req); err != nil {
		return nil, err
	}
	switch {
	case req.All && len(req.Keys) > 0:
		return nil, badRequest("a plan is of keys or of all, not both")
	case !req.All && (req.Match != "" || len(req.Except) > 0):
		return nil, badRequest("match and except apply only with all")
	case !req.All && len(req.Keys) == 0:
		return nil, badRequest("no keys to plan: give keys, or all")
	case len(req.Keys) > MaxKeys:
		return nil, badRequest("%d keys in one request: at most %d", len(req.Keys), MaxKeys)
	case len(req.Except) > MaxKeys:
		return nil, badRequest("%d except IDs: at most %d", len(req.Except), MaxKeys)
	case len(req.Match) > maxPattern:
		return nil, badRequest("match pattern of %d bytes: at most %d", len(req.Match), maxPattern)
	}
	if _, err := path.Match(req.Match, ""); err != nil {
		return nil, badRequest("match: %s is not a valid pattern (path.Match: * ? [a-z] \\)", events.Quote(req.Match))
	}
	except := make([]string, 0, len(req.Except))
	for _, id := range req.Except {
		if !kalshi.ValidKeyID(id) {
			return nil, badRequest("except: %s is not a Kalshi API key ID", events.Quote(id))
		}
		if c := events.CanonicalAPIKeyID(id); !slices.Contains(except, c) {
			except = append(except, c)
		}
	}
	l, err := s.listing(ctx, arrived)
	if err != nil {
		return nil, err
	}
	reply := PlanReply{Guards: s.cfg.Guards, ListedAt: l.started}
	if req.All {
		all := PlanAll(s.cfg.Guards, l.keys, req.Match, except)
		reply.All = &all
	} else {
		reply.Keys = PlanKeys(s.cfg.Guards, Listed(l.keys), req.Keys)
	}
	return reply, nil
}

func (s *Service) statusEndpoint(ctx context.Context, arrived time.Time, data []byte) (any, error) {
	var req StatusRequest
	if err := decode(data, &req); err != nil {
		return nil, err
	}
	switch {
	case len(req.Keys) == 0:
		return nil, badRequest("no keys: give at least one key ID")
	case len(req.Keys) > MaxKeys:
		return nil, badRequest("%d keys in one request: at most %d", len(req.Keys), MaxKeys)
	}
	for _, id := range req.Keys {
		if !kalshi.ValidKeyID(id) {
			return nil, badRequest("%s is not a Kalshi API key ID", events.Quote(id))
		}
	}
	led, err := s.openLedger(ctx)
	if err != nil {
		return nil, err
	}
	l, err := s.listing(ctx, arrived)
	if err != nil {
		return nil, err
	}
	listed := Listed(l.keys)
	reply := StatusReply{Keys: make([]KeyStatus, len(req.Keys)), ListedAt: l.started}
	for i, id := range req.Keys {
		st := KeyStatus{APIKeyID: events.CanonicalAPIKeyID(id)}
		st.Listed = listed[st.APIKeyID]
		if led != nil {
			lctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
			st.Revoked, err = led.Lookup(lctx, id)
			cancel()
			if err != nil {
				return nil, unavailable("the ledger did not answer: %v", err)
			}
		}
		reply.Keys[i] = st
	}
	return reply, nil
}

// openLedger binds to the ledger once; nil when the console has no
// JetStream.
func (s *Service) openLedger(ctx context.Context) (*ledger.Ledger, error) {
	if s.cfg.JS == nil {
		return nil, nil
	}
	s.ledgerMu.Lock()
	defer s.ledgerMu.Unlock()
	if s.ledger != nil {
		return s.ledger, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	l, err := ledger.Open(ctx, s.cfg.JS)
	if err != nil {
		return nil, unavailable("%v", err)
	}
	s.ledger = l
	return l, nil
}

func (s *Service) healthEndpoint(ctx context.Context, _ time.Time, data []byte) (any, error) {
	var req struct{}
	if err := decode(data, &req); err != nil {
		return nil, err
	}
	h := Health{
		Replica:       s.cfg.Replica,
		Version:       s.cfg.Version,
		Ready:         true,
		Credential:    true,
		KalshiBaseURL: s.cfg.KalshiBaseURL,
		SelfKeyID:     s.cfg.Guards.SelfKeyID,
		Replicas:      []budget.ReplicaMember{},
	}
	if h.Replica == "" {
		h.Replica = s.svc.Info().ID
	}
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			h.Ready, h.NotReady = false, err.Error()
		}
	}
	if s.cfg.Credential != nil {
		if err := s.cfg.Credential(); err != nil {
			h.Credential, h.CredentialErr = false, err.Error()
		}
	}
	if s.cfg.JS == nil {
		h.ReplicasErr = "no JetStream"
		return h, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	members, err := budget.ReadReplicaPlan(ctx, s.cfg.JS, s.cfg.Group)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		h.ReplicasErr = "no replica plan (" + budget.ReplicasBucket + " does not exist: a fixed REVOKER_RATE or REVOKER_RATE_SHARE needs none)"
	case err != nil:
		h.ReplicasErr = err.Error()
	case members != nil:
		h.Replicas = members
	}
	return h, nil
}

// semverRE is micro's own test of a version.
var semverRE = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// semver is version as micro wants it (SemVer, no leading v), or
// 0.0.0-dev for a development build.
func semver(version string) string {
	if v := strings.TrimPrefix(version, "v"); semverRE.MatchString(v) {
		return v
	}
	return "0.0.0-dev"
}

// oneLine keeps an error message to one line: it travels in a header.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
