package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker"
	"github.com/revoker/revoker/worker/budget"
	"github.com/revoker/revoker/worker/console"
	"github.com/revoker/revoker/worker/metrics"
	"github.com/revoker/revoker/worker/provision"
)

// shutdownHTTPBudget is how long the HTTP server may take to stop.
const shutdownHTTPBudget = 5 * time.Second

// serve is "revoker run".
func serve(ctx context.Context, cfg Config, logger *slog.Logger) error {
	client, err := newKalshiClient(cfg)
	if err != nil {
		return err
	}
	nc, err := connectNATS(ctx, cfg, "revoker", logger)
	if err != nil {
		return err
	}
	defer nc.Close()
	watchCtx, stopWatch := context.WithCancel(ctx)
	var watch sync.WaitGroup
	watch.Go(func() { watchJetStream(watchCtx, nc, cfg.RequestsStream, logger) })
	defer func() { stopWatch(); watch.Wait() }()
	return runService(ctx, cfg, logger, client, nc, nil)
}

func newKalshiClient(cfg Config) (*kalshi.Client, error) {
	key, err := kalshi.ParsePrivateKey(cfg.KalshiPrivateKey.Bytes())
	if err != nil {
		return nil, fmt.Errorf("loading the Kalshi private key: %w", err)
	}
	return newKalshiClientWith(cfg, key)
}

func newKalshiClientWith(cfg Config, key crypto.Signer) (*kalshi.Client, error) {
	return kalshi.New(kalshi.Config{
		BaseURL:    cfg.KalshiBaseURL,
		KeyID:      cfg.KalshiKeyID,
		PrivateKey: key,
		UserAgent:  userAgent(),
	})
}

// workerConfig maps the binary's settings onto the worker's.
func workerConfig(cfg Config, logger *slog.Logger, m *metrics.Metrics, limiter *budget.Limiter) worker.Config {
	return worker.Config{
		RequestsSubject: cfg.RequestsSubject,
		ResultsSubject:  cfg.ResultsSubject,
		RequestsStream:  cfg.RequestsStream,
		ResultsStream:   cfg.ResultsStream,
		Consumer:        cfg.Consumer,
		ResultsMode:     cfg.ResultsMode,
		Provision:       !cfg.NoProvision,
		Replicas:        cfg.StreamReplicas,
		Concurrency:     cfg.Concurrency,
		MaxRetry:        cfg.MaxRetry,
		MaxSchedule:     cfg.MaxSchedule,
		AttemptTimeout:  cfg.AttemptTimeout,
		SelfKeyID:       cfg.KalshiKeyID,
		AllowSelfRevoke: cfg.AllowSelfRevoke,
		ProtectedKeys:   cfg.ProtectedKeys,
		CancelOrders:    cfg.CancelOrders,
		Policy:          requestPolicy(cfg),
		Limiter:         limiter,
		Metrics:         m,
		Logger:          logger,
	}
}

// runService runs the worker with its HTTP endpoints and the account-limits
// refresher until ctx is cancelled, then shuts down in order: stop pulling,
// finish in-flight requests, drain the connection. started, if not nil, is
// called once the worker is ready.
func runService(ctx context.Context, cfg Config, logger *slog.Logger, client *kalshi.Client, nc *nats.Conn, started func()) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfoMetric())
	m := metrics.New(reg)
	limiter, cancels := budget.NewLimiter(0, 0), budget.NewLimiter(0, 0)
	wcfg := workerConfig(cfg, logger, m, limiter)
	wcfg.Cancels = cancels
	w, err := worker.New(js, client, wcfg)
	if err != nil {
		return err
	}
	// A 429 or Retry-After seen here pauses the other replicas too, and
	// theirs pause this one (revoker.fleet.pause.<consumer>).
	fleet, err := budget.JoinFleet(nc, budget.FleetConfig{Group: cfg.Consumer, Limiter: limiter, Logger: logger})
	if err != nil {
		return err
	}
	defer fleet.Leave()

	acct := &account{client: client, cfg: cfg, limiter: limiter, cancels: cancels, logger: logger}
	ready := w.Ready // connected, bound, and Kalshi accepts the credential
	if cfg.HTTPAddr != "" {
		stopHTTP, err := startHTTP(cfg.HTTPAddr, reg, ready, logger)
		if err != nil {
			return err
		}
		defer stopHTTP()
	}

	// The account's budget is split among the replicas that share it: each
	// spends its share of the plan in REVOKER_REPLICAS, or the fixed one.
	// The share outlives ctx while the worker drains, then leaves the plan.
	shareDone := make(chan struct{})
	stopShare := func() {}
	replica := "" // this replica's name in the plan, when it has one
	if cfg.Rate.Auto {
		if cfg.RateShare == 0 && cfg.NoProvision {
			if _, err := js.KeyValue(ctx, budget.ReplicasBucket); err != nil {
				return fmt.Errorf("REVOKER_RATE_SHARE=auto needs the KV bucket %s (create it as deploy/README.md shows, or set a fixed share): %w", budget.ReplicasBucket, err)
			}
		}
		scfg := budget.ShareConfig{Group: cfg.Consumer, Fixed: cfg.RateShare, Limiter: limiter, Logger: logger}
		if !cfg.NoProvision {
			// On a new server the share creates its bucket as the worker
			// would: the first plan need not wait for the worker's provisioning.
			bucket := provision.ReplicasConfig(workerConfig(cfg, logger, m, limiter).Provisioning())
			scfg.Bucket = &bucket
		}
		share := budget.NewShare(js, scfg)
		replica = share.ID()
		var sctx context.Context
		sctx, stopShare = context.WithCancel(context.WithoutCancel(ctx))
		go func() { defer close(shareDone); share.Run(sctx) }()
	} else {
		close(shareDone)
	}

	// The helpers end with the worker, also when it refuses to start.
	ctx, stopHelpers := context.WithCancel(ctx)
	defer stopHelpers()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); acct.refreshLoop(ctx) }()
	if started != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if waitUntil(ctx, 100*time.Millisecond, func() bool { return ready() == nil }) {
				started()
			}
		}()
	}
	// The operator console answers with this worker's client, budget and
	// guards; it stops before the worker drains.
	con, err := console.Start(nc, consoleConfig(cfg, logger, client, js, limiter, w, replica))
	if err != nil {
		stopHelpers()
		wg.Wait()
		stopShare()
		<-shareDone
		return err
	}
	logger.Info("revoker started", "version", version, "nats", connectedURL(nc),
		"kalshi", client.BaseURL(), "key_id", client.KeyID(), "concurrency", cfg.Concurrency, "rate", cfg.Rate.String())
	err = w.Run(ctx)
	if serr := con.Stop(); serr != nil {
		logger.Warn("stopping the console", "err", serr)
	}
	stopHelpers()
	wg.Wait()
	stopShare()
	<-shareDone
	if derr := nc.Drain(); derr != nil && !errors.Is(derr, nats.ErrConnectionClosed) {
		logger.Warn("draining the NATS connection", "err", derr)
	}
	return err
}

// consoleConfig wires the console to the worker it runs beside.
func consoleConfig(cfg Config, logger *slog.Logger, client *kalshi.Client, js jetstream.JetStream, limiter *budget.Limiter, w *worker.Worker, replica string) console.Config {
	return console.Config{
		Kalshi:        client,
		Limiter:       limiter,
		Guards:        console.Guards{SelfKeyID: cfg.KalshiKeyID, AllowSelfRevoke: cfg.AllowSelfRevoke, ProtectedKeys: cfg.ProtectedKeys},
		JS:            js,
		Group:         cfg.Consumer,
		Ready:         w.Ready,
		Credential:    w.CredentialState,
		Replica:       replica,
		Version:       version,
		KalshiBaseURL: client.BaseURL(),
		CallTimeout:   cfg.AttemptTimeout,
		Logger:        logger,
	}
}

// startHTTP serves /metrics, /healthz and /readyz on addr. The listener is
// open when it returns, so a busy port is reported at start.
func startHTTP(addr string, reg *prometheus.Registry, ready func() error, logger *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("REVOKER_HTTP_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	srv := httpServer(mux)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http server", "err", err)
		}
	}()
	logger.Info("serving /metrics, /healthz and /readyz", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownHTTPBudget)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// httpServer bounds every phase of a connection: a slow or idle client
// cannot hold the server's resources.
func httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
}

// waitUntil polls cond every interval until it holds (true) or ctx ends.
func waitUntil(ctx context.Context, interval time.Duration, cond func() bool) bool {
	t := time.NewTicker(interval)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}
