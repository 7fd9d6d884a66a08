package budget

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Fleet-wide pauses. Kalshi's limits are per account, so a 429 or a
// Retry-After seen by one replica must hold every call signed with the
// credential on every replica, not only in the process that got it. A
// replica that pauses (Limiter.Pause) or halves its rate (Limiter.Throttle)
// because of Kalshi publishes it on PauseSubject(group) with core NATS: no
// stream, no acknowledgement, a fraction of a millisecond on a LAN. Every
// replica of the group subscribes and applies what it hears to its own
// limiter, without publishing again.
//
// A message carries the sender's clock twice: when it was sent and when the
// pause ends. The receiver pauses for the difference from when it hears it,
// so clocks that disagree neither shorten nor lengthen the pause (transit
// lengthens it, by milliseconds); it accepts at most MaxPause, the ceiling a
// local Retry-After has, and only ever lengthens a pause it already has. A
// garbled or oversized message is dropped. Nothing in a message is secret:
// a replica id, two times and a flag.
//
// A replica that joins (starts) asks the others on PauseSubject(group) +
// ".ask"; each one paused answers with its pause, so a replica started
// during a pause keeps it. A replica that misses a broadcast (it was
// disconnected, or the message was lost) reads the pause in the replica
// plan at its next step (share.go: each replica records what is left of
// its own pause with its beat, every ShareBeat). A pause is not published
// while the connection is down: buffered until a reconnect, it would be
// stale.

// FleetSubject is the subject prefix of the replicas' broadcasts to each
// other: the credential's pauses (here), and what they hold and the
// listings they share (package worker).
const FleetSubject = "revoker.fleet"

// PauseSubjectPrefix is followed by the group (the consumer name).
const PauseSubjectPrefix = FleetSubject + ".pause."

// askSuffix is appended to PauseSubject for the question a joining replica
// asks; askWindow is how long it listens for answers.
const (
	askSuffix = ".ask"
	askWindow = time.Second
)

// maxPauseMsg bounds what a receiver parses.
const maxPauseMsg = 1024

// PauseSubject is the subject on which the replicas of group share pauses.
func PauseSubject(group string) string {
	if group == "" {
		group = defaultGroup
	}
	return PauseSubjectPrefix + group
}

// FleetConfig configures a replica's part in the fleet's pauses.
type FleetConfig struct {
	// Group names the replicas that share a credential; default the
	// consumer name "revoker".
	Group string
	// Limiter is the replica's budget: its pauses and throttles are
	// published, and those of the others applied to it.
	Limiter *Limiter
	// ID names this replica in its messages (its own are ignored when they
	// come back); default host-pid-random.
	ID     string
	Logger *slog.Logger // default: discard
}

// Fleet shares a replica's pauses with the other replicas of its group.
// Create it with JoinFleet; Leave stops both directions.
type Fleet struct {
	nc      *nats.Conn
	subject string
	id      string
	lim     *Limiter
	log     *slog.Logger
	sub     *nats.Subscription
	ask     *nats.Subscription
	// reconnected hears the connection come back, to ask again.
	reconnected chan nats.Status
	stopTicks   chan struct{}

	mu        sync.Mutex
	warned    time.Time // when a bad message was last logged
	published error     // the last publish error logged, so that one is not repeated
}

// pauseMsg is the message on PauseSubject: times in the sender's clock.
type pauseMsg struct {
	From     string    `json:"from"`
	Sent     time.Time `json:"sent"`
	Until    time.Time `json:"until,omitzero"`
	Throttle bool      `json:"throttle,omitempty"`
}

// JoinFleet subscribes to the group's pauses and publishes the limiter's
// own from now on.
func JoinFleet(nc *nats.Conn, cfg FleetConfig) (*Fleet, error) {
	if cfg.Limiter == nil {
		return nil, errors.New("fleet: no limiter")
	}
	if cfg.ID == "" {
		cfg.ID = replicaID()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{nc: nc, subject: PauseSubject(cfg.Group), id: cfg.ID, lim: cfg.Limiter, log: cfg.Logger}
	sub, err := nc.Subscribe(f.subject, f.receive)
	if err != nil {
		return nil, fmt.Errorf("subscribing to the fleet's pauses on %s: %w", f.subject, err)
	}
	// A pause must not wait behind a slow handler; few messages ever come.
	_ = sub.SetPendingLimits(256, 256*maxPauseMsg)
	f.sub = sub
	if f.ask, err = nc.Subscribe(f.subject+askSuffix, f.answer); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("subscribing to %s: %w", f.subject+askSuffix, err)
	}
	cfg.Limiter.setNotify(f.publish)
	f.askOthers()
	// A replica that was disconnected missed the broadcasts meanwhile: it
	// asks again once connected.
	f.reconnected = nc.StatusChanged(nats.CONNECTED)
	go func() {
		for range f.reconnected {
			f.askOthers()
			f.tellAgain()
		}
	}()
	// A replica frozen for a while (SIGSTOP) asks again on waking too.
	cfg.Limiter.setWoke(f.askOthers)
	f.stopTicks = make(chan struct{})
	go f.tick()
	return f, nil
}

// awakeTick is how often a replica notes that it runs (Limiter.keepAwake).
const awakeTick = 100 * time.Millisecond

func (f *Fleet) tick() {
	t := time.NewTicker(awakeTick)
	defer t.Stop()
	for {
		select {
		case <-f.stopTicks:
			return
		case <-t.C:
			f.lim.keepAwake(time.Now()) // not the tick's time: one from before a freeze may wait in t.C
		}
	}
}

// tellAgain publishes this replica's pause in force once connected again:
// one published while the connection was down reached no one.
func (f *Fleet) tellAgain() {
	if until := f.lim.PausedUntil(); time.Now().Before(until) {
		f.publish(pauseNote{until: until})
	}
}

// Leave stops publishing this replica's pauses and applying the others'.
func (f *Fleet) Leave() {
	f.nc.RemoveStatusListener(f.reconnected)
	close(f.stopTicks)
	f.lim.setWoke(nil)
	f.lim.setNotify(nil)
	_ = f.sub.Unsubscribe()
	_ = f.ask.Unsubscribe()
}

// askOthers asks the replicas already running for the pause in force; the
// answers, for askWindow, are applied as broadcasts are. It does not wait.
func (f *Fleet) askOthers() {
	inbox := f.nc.NewInbox() // under the connection's own inbox prefix
	sub, err := f.nc.Subscribe(inbox, f.receive)
	if err != nil {
		f.log.Warn("cannot ask the other replicas for a pause in force", "err", err)
		return
	}
	time.AfterFunc(askWindow, func() { _ = sub.Unsubscribe() })
	if err := f.nc.PublishRequest(f.subject+askSuffix, inbox, nil); err != nil {
		f.log.Warn("cannot ask the other replicas for a pause in force", "err", err)
	}
}

// answer tells a joining replica the pause in force here, if any.
func (f *Fleet) answer(m *nats.Msg) {
	until := f.lim.PausedUntil()
	if m.Reply == "" || !time.Now().Before(until) {
		return
	}
	data, err := json.Marshal(pauseMsg{From: f.id, Sent: time.Now(), Until: until})
	if err == nil {
		_ = m.Respond(data)
	}
}

// publish tells the others of a local pause or throttle.
func (f *Fleet) publish(n pauseNote) {
	data, err := json.Marshal(pauseMsg{From: f.id, Sent: time.Now(), Until: n.until, Throttle: n.throttle})
	switch {
	case err != nil:
	case !f.nc.IsConnected():
		err = errors.New("not connected to NATS")
	default:
		err = f.nc.Publish(f.subject, data)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil && (f.published == nil || f.published.Error() != err.Error()) {
		f.log.Warn("cannot tell the other replicas of a pause; each pauses on its own next 429", "subject", f.subject, "err", err)
	}
	f.published = err
}

// receive applies another replica's pause or throttle.
func (f *Fleet) receive(m *nats.Msg) {
	n, from, err := parsePause(m.Data, time.Now())
	if err != nil {
		f.bad(err)
		return
	}
	if from == f.id {
		return // our own, back from the server
	}
	if !n.until.IsZero() && f.lim.pauseUntil(n.until) {
		f.log.Info("paused by another replica's Retry-After", "replica", from, "for_ms", time.Until(n.until).Milliseconds())
	}
	if n.throttle && f.lim.throttle() {
		f.log.Info("rate halved by another replica's 429", "replica", from, "rate", f.lim.Rate())
	}
}

// bad logs a message that was dropped, at most every 10 s: a flood of
// garbage must not flood the log too.
func (f *Fleet) bad(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.warned) < 10*time.Second {
		return
	}
	f.warned = time.Now()
	f.log.Warn("ignoring a message on the fleet's pause subject", "subject", f.subject, "err", err)
}

// parsePause reads a message heard at now: the pause it asks for, on the
// receiver's clock (until is zero when it asks for none), bounded by
// MaxPause.
func parsePause(data []byte, now time.Time) (n pauseNote, from string, err error) {
	if len(data) > maxPauseMsg {
		return n, "", fmt.Errorf("%d bytes, more than %d", len(data), maxPauseMsg)
	}
	var m pauseMsg
	if err := json.Unmarshal(data, &m); err != nil {
		return n, "", errors.New("not a pause message") // the content may be anything: not echoed
	}
	if m.From == "" || m.Sent.IsZero() {
		return n, "", errors.New("a pause message without its sender or sending time")
	}
	n.throttle = m.Throttle
	if !m.Until.IsZero() {
		if d := m.Until.Sub(m.Sent); d > 0 {
			n.until = now.Add(min(d, MaxPause))
		}
	}
	return n, m.From, nil
}
