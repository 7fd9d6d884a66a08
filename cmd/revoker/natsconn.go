package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Connection tuning. Reconnects never stop: a worker without NATS can do
// nothing useful, and JetStream keeps its requests meanwhile.
const (
	natsReconnectWait   = time.Second
	natsReconnectJitter = 500 * time.Millisecond
	natsJitterTLS       = 2 * time.Second
	natsDialTimeout     = 5 * time.Second
	natsPingInterval    = 20 * time.Second
	natsMaxPingsOut     = 3
	// A failing reconnect is logged as a warning when its error changes,
	// and otherwise at most this often; the repeats go to debug.
	natsReconnectLogEvery = time.Minute
)

// The inbox prefix of each role of deploy/nats/accounts.conf. Replies (a
// JetStream publish's ack, a pulled message, a ledger read, a console
// answer) go to the asker's inbox, and whoever may subscribe to it reads
// them: so each role may subscribe only to its own prefix, and revoker
// connects with the prefix of the role its command acts in.
const (
	inboxWorker    = "_INBOX.worker"
	inboxRequester = "_INBOX.requester"
	inboxAuditor   = "_INBOX.auditor"
	inboxAdmin     = "_INBOX.admin" // the nats CLI's, for operators; no command uses it
)

// defaultInboxPrefix is the inbox prefix of the role command acts in.
// signs: the command has the worker's Kalshi settings (check).
func defaultInboxPrefix(command string, signs bool) string {
	switch command {
	case "revoke":
		return inboxRequester
	case "results", "status", "keys":
		return inboxAuditor
	case "check":
		if signs {
			return inboxWorker
		}
		return inboxAuditor
	}
	return inboxWorker // run, sandbox
}

// natsOptions returns the options of a NATS connection named name: the
// authentication and TLS of cfg, endless reconnects with jitter, and
// handlers that log connection events through logger. The nkey seed and
// TLS files are read now, so an unreadable one is an error here rather than
// at connect time; the creds and TLS files are read again on every
// reconnect, so rotated ones are picked up.
func natsOptions(cfg Config, name string, logger *slog.Logger) ([]nats.Option, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(natsReconnectWait),
		nats.ReconnectJitter(natsReconnectJitter, natsJitterTLS),
		nats.Timeout(natsDialTimeout),
		nats.PingInterval(natsPingInterval),
		nats.MaxPingsOutstanding(natsMaxPingsOut),
	}
	if cfg.NATSInboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(cfg.NATSInboxPrefix))
	}
	opts = append(opts, natsLogHandlers(logger, cfg.NATSURLs, lifecycleLevel(cfg.Command), cfg.Command == "run")...)

	switch {
	case cfg.NATSCreds != "" && cfg.NATSNkeySeed != "":
		return nil, errors.New("nats: both a creds file and an nkey seed file are configured; use one")
	case cfg.NATSCreds != "":
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	case cfg.NATSNkeySeed != "":
		opt, err := nats.NkeyOptionFromSeed(cfg.NATSNkeySeed)
		if err != nil {
			return nil, fmt.Errorf("nats nkey seed %s: %w", cfg.NATSNkeySeed, pathErrorReason(err))
		}
		opts = append(opts, opt)
	}

	if cfg.NATSTLSCA != "" {
		opt := nats.RootCAs(cfg.NATSTLSCA)
		if err := tryOption(opt); err != nil {
			return nil, fmt.Errorf("nats tls ca %s: %w", cfg.NATSTLSCA, err)
		}
		opts = append(opts, opt)
	}
	switch {
	case cfg.NATSTLSCert != "" && cfg.NATSTLSKey != "":
		opt := nats.ClientCert(cfg.NATSTLSCert, cfg.NATSTLSKey)
		if err := tryOption(opt); err != nil {
			return nil, fmt.Errorf("nats tls client certificate %s: %w", cfg.NATSTLSCert, err)
		}
		opts = append(opts, opt)
	case cfg.NATSTLSCert != "" || cfg.NATSTLSKey != "":
		return nil, errors.New("nats tls: a client certificate needs both the certificate and its key")
	}
	return opts, nil
}

// tryOption applies opt to throwaway options, so that the files it reads
// are checked now. nats.RootCAs and nats.ClientCert load their files when
// applied.
func tryOption(opt nats.Option) error {
	o := nats.GetDefaultOptions()
	return opt(&o)
}

// lifecycleLevel is the level of the "connected" and "closed" lines of
// command's connection: news from a service, noise around a command's
// answer.
func lifecycleLevel(command string) slog.Level {
	if command == "run" || command == "sandbox" {
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// natsLogHandlers log the life of a connection to urls; connecting and
// closing at level lifecycle, trouble as warnings and errors. Server URLs and
// errors are logged with the credentials of urls redacted. The first connect
// is logged here only when it may come later (retry): otherwise dialNATS
// logs it before it returns, since nats.go calls the handler asynchronously.
func natsLogHandlers(logger *slog.Logger, urls []string, lifecycle slog.Level, retry bool) []nats.Option {
	var (
		mu      sync.Mutex
		lastErr string
		lastAt  time.Time
	)
	connected := func(nc *nats.Conn) {
		logger.Log(context.Background(), lifecycle, "connected to NATS", "url", connectedURL(nc), "server", nc.ConnectedServerName())
	}
	if !retry {
		connected = nil
	}
	return []nats.Option{
		nats.ConnectHandler(connected),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err == nil { // closed on purpose
				return
			}
			logger.Warn("disconnected from NATS; reconnecting", "err", redactError(err, urls))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			mu.Lock()
			lastErr, lastAt = "", time.Time{}
			mu.Unlock()
			logger.Info("reconnected to NATS", "url", connectedURL(nc), "server", nc.ConnectedServerName())
		}),
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			if err == nil {
				return
			}
			err = redactError(err, urls)
			mu.Lock()
			now := time.Now()
			loud := err.Error() != lastErr || now.Sub(lastAt) >= natsReconnectLogEvery
			if loud {
				lastErr, lastAt = err.Error(), now
			}
			mu.Unlock()
			level := slog.LevelDebug
			if loud {
				level = slog.LevelWarn
			}
			logger.Log(context.Background(), level, "cannot reach NATS; retrying", "err", err)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil {
				logger.Warn("NATS connection closed", "err", redactError(err, urls))
				return
			}
			logger.Log(context.Background(), lifecycle, "NATS connection closed")
		}),
		nats.ErrorHandler(natsErrorLogger(logger, urls)),
		nats.LameDuckModeHandler(func(nc *nats.Conn) {
			logger.Warn("NATS server is shutting down (lame duck mode); will move to another", "server", nc.ConnectedServerName())
		}),
	}
}

// natsErrorLogger logs an asynchronous error of a connection to urls, such
// as a refused publish, with their credentials redacted.
func natsErrorLogger(logger *slog.Logger, urls []string) nats.ErrHandler {
	return func(_ *nats.Conn, sub *nats.Subscription, err error) {
		err = redactError(err, urls)
		if sub != nil {
			logger.Error("NATS error", "subject", sub.Subject, "err", err)
			return
		}
		logger.Error("NATS error", "err", err)
	}
}

// connectCLI connects for a command that does one job and returns a context
// that ends, with the refusal as its cause, as soon as the server refuses
// one of the command's publishes or subscriptions (a permissions
// violation): the command fails at once, saying why, instead of waiting for
// an answer that never comes. See refusal.
func connectCLI(ctx context.Context, cfg Config, name string, logger *slog.Logger) (context.Context, *nats.Conn, context.CancelFunc, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	nc, err := dialNATS(ctx, cfg, name, logger, func(err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			cancel(redactError(err, cfg.NATSURLs))
		}
	})
	if err != nil {
		cancel(nil)
		return nil, nil, nil, err
	}
	return ctx, nc, func() { cancel(nil) }, nil
}

// refusal is the permissions violation that ended ctx, if one did, in
// place of err (even nil: a --follow that ends on it failed); otherwise err.
func refusal(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && errors.Is(cause, nats.ErrPermissionViolation) {
		return fmt.Errorf("the NATS server refused: %w", cause)
	}
	return err
}

// connectNATS connects to cfg's NATS servers. For "run" the connection
// retries in the background when no server is reachable yet (the worker
// waits for NATS instead of exiting); for every other command one failed
// attempt is an error. ctx bounds the attempt.
func connectNATS(ctx context.Context, cfg Config, name string, logger *slog.Logger) (*nats.Conn, error) {
	return dialNATS(ctx, cfg, name, logger, nil)
}

// dialNATS is connectNATS; onError, if not nil, also sees every
// asynchronous error of the connection.
func dialNATS(ctx context.Context, cfg Config, name string, logger *slog.Logger, onError func(error)) (*nats.Conn, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts, err := natsOptions(cfg, name, logger)
	if err != nil {
		return nil, err
	}
	if onError != nil {
		logErr := natsErrorLogger(logger, cfg.NATSURLs)
		opts = append(opts, nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			logErr(nc, sub, err)
			onError(err)
		}))
	}
	retry := cfg.Command == "run"
	if retry {
		opts = append(opts, nats.RetryOnFailedConnect(true))
	}
	if len(cfg.NATSURLs) == 0 {
		return nil, errors.New("nats: no server URL configured")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(strings.Join(cfg.NATSURLs, ","), opts...)
		done <- result{nc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("connect to NATS at %s: %w", redactURLs(cfg.NATSURLs), redactError(r.err, cfg.NATSURLs))
		}
		if r.nc.IsConnected() {
			if err := checkInbox(ctx, r.nc, cfg.NATSInboxPrefix); err != nil {
				r.nc.Close()
				return nil, err
			}
		}
		switch {
		case retry && !r.nc.IsConnected():
			logger.Warn("NATS is not reachable yet; retrying in the background", "url", redactURLs(cfg.NATSURLs))
		case !retry:
			logger.Log(ctx, lifecycleLevel(cfg.Command), "connected to NATS", "url", connectedURL(r.nc), "server", r.nc.ConnectedServerName())
		}
		return r.nc, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("connect to NATS at %s: %w", redactURLs(cfg.NATSURLs), ctx.Err())
	}
}

// checkInbox subscribes to one inbox of nc and fails, naming the setting,
// when the server refuses it: a user connecting with another role's inbox
// prefix (or none) would otherwise wait for every reply until its timeout.
// The server answers the subscription before the flush's pong, so the
// refusal is known when the flush returns.
func checkInbox(ctx context.Context, nc *nats.Conn, prefix string) error {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("subscribe to a reply inbox: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	ctx, cancel := context.WithTimeout(ctx, natsDialTimeout)
	defer cancel()
	// The refusal may also end ctx first (connectCLI's handler): look at it
	// before the flush's error.
	flushErr := nc.FlushWithContext(ctx)
	if err := nc.LastError(); errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), inbox) {
		if prefix == "" {
			prefix = nats.InboxPrefix[:len(nats.InboxPrefix)-1]
		}
		return fmt.Errorf("%w: this user may not read replies under %s.>: set NATS_INBOX_PREFIX (--nats-inbox-prefix) to the prefix of its role (deploy/nats/accounts.conf: %s, %s, %s, %s)",
			nats.ErrPermissionViolation, prefix, inboxWorker, inboxRequester, inboxAuditor, inboxAdmin)
	}
	if flushErr != nil {
		return fmt.Errorf("NATS did not answer: %w", flushErr)
	}
	return nil
}

// connectedURL is the URL of the server nc is connected to, without
// credentials: nats.Conn.ConnectedUrlRedacted hides a password, but not a
// token or a user name.
func connectedURL(nc *nats.Conn) string {
	return redactURL(nc.ConnectedUrl())
}

func redactURLs(urls []string) string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = redactURL(u)
	}
	return strings.Join(out, ",")
}

// redactURL replaces the credentials of a server URL, whichever form they
// take (token, user, user:password), with REDACTED. It works on the text
// alone, so a URL that does not parse is redacted too.
func redactURL(raw string) string {
	head, cred, tail := splitCredentials(raw)
	if cred == "" {
		return raw
	}
	return head + redacted + tail
}

// splitCredentials splits a server URL around its credentials, as in
// "nats://", "TOKEN", "@host:4222"; cred is "" when there are none.
func splitCredentials(raw string) (head, cred, tail string) {
	rest := raw
	if i := strings.Index(raw, "://"); i >= 0 {
		head, rest = raw[:i+3], raw[i+3:]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return head, "", rest
	}
	return head, rest[:at], rest[at:]
}

// redactError hides the credentials of urls in err's text: net/url and
// nats.go quote a URL they cannot use in their errors. The result still
// unwraps to err.
func redactError(err error, urls []string) error {
	if err == nil {
		return nil
	}
	text := err.Error()
	for _, u := range urls {
		if _, cred, _ := splitCredentials(u); cred != "" {
			quoted := strconv.Quote(cred)
			text = strings.ReplaceAll(text, cred, redacted)
			text = strings.ReplaceAll(text, quoted[1:len(quoted)-1], redacted)
		}
	}
	if text == err.Error() {
		return err
	}
	return &redactedError{text: text, err: err}
}

type redactedError struct {
	text string
	err  error
}

func (e *redactedError) Error() string { return e.text }
func (e *redactedError) Unwrap() error { return e.err }
