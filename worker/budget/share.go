package budget

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The shared budget. Replicas of one deployment (one durable consumer)
// split the account's delete budget: with REVOKER_RATE_SHARE=auto each
// spends 1/N of it, N the replicas alive, re-planned within a few seconds
// when one starts or dies.
//
// The plan is one document in the KV bucket ReplicasBucket, changed only by
// compare-and-set: per replica the share it may spend and a beat counter it
// bumps every ShareBeat. The sum of the shares the document records never
// exceeds 1, and what a replica spends never exceeds what the document
// records for it:
//
//   - lowering, a replica first spends less, then records it;
//   - raising, it first records the new share (the compare-and-set fails
//     if the plan changed meanwhile), then spends it; it raises only up
//     to what the others leave, so a joiner starts at zero and rises as the
//     others record their lower shares;
//   - a replica that has not recorded a beat for shareLease spends nothing
//     until it records one again (it cannot know whether the others still
//     count it);
//   - a replica is struck from the plan only by one that saw its beat
//     counter unchanged for shareDead > shareLease, measured on its own
//     clock from when it first saw that value: by then the silent replica
//     spends nothing, dead or cut off.
//
// A replica that waits for the others to lower their shares (a joiner)
// reads the plan every sharePoll between its beats, and raises its own as
// soon as they have recorded theirs, not at its next beat: a join takes the
// others' next beat plus a poll, not two beats. A replica whose step failed
// retries after sharePoll, then twice, four and eight times as long, and
// then at its beats. A settled replica only beats: waking up
// costs an idle Go process a few hundred microseconds of CPU, so polling
// all the time would cost more than the whole idle worker. (Reacting to a
// join within milliseconds needs the plan pushed to every replica, a KV
// watch: a consumer on the bucket's stream, which the deployed permissions
// do not grant.)
//
// A fixed share (REVOKER_RATE_SHARE=0.5) is an override: that replica
// spends it whatever the plan says, and records it, so the automatic ones
// split what the fixed ones leave.
const (
	// ReplicasBucket is the JetStream KV bucket of the replica plan.
	ReplicasBucket = "REVOKER_REPLICAS"
	// ShareBeat is how often a replica records its beat and re-plans.
	ShareBeat  = 200 * time.Millisecond
	shareLease = 2 * ShareBeat
	shareDead  = 3 * ShareBeat
	// sharePoll is how often a replica waiting for the others reads the
	// plan between beats, and how soon a failed step is first retried.
	sharePoll = ShareBeat / 8
	// replicasTTL drops a plan nobody has written for this long: every
	// replica has stopped spending by then (shareLease), and the next one to
	// start need not wait shareDead for the dead to be struck.
	replicasTTL = 10 * time.Second
	// shareOpTime bounds one read or write of the plan: as long as the
	// lease, so that a loaded machine's slow answer still renews it rather
	// than fail the step and lapse every other beat.
	shareOpTime = shareLease
)

// ShareConfig configures a replica's part in the shared budget.
type ShareConfig struct {
	// Group names the replicas that share a budget; default the consumer
	// name "revoker" (replicas of one deployment share its consumer).
	Group string
	// Fixed, in (0, 1], is this replica's share, whatever the others do
	// (REVOKER_RATE_SHARE as a number). 0: automatic, 1/N of what fixed
	// replicas leave.
	Fixed float64
	// Limiter is the budget the share applies to (Limiter.SetShare).
	Limiter *Limiter
	// ID names this replica in the plan; default host-pid-random.
	ID string
	// Bucket, if set, creates ReplicasBucket with this configuration when it
	// is missing (provisioning, as BucketConfig gives it), so that the
	// first replica on a new server need not wait for the worker to create
	// it. Nil: the bucket must exist.
	Bucket *jetstream.KeyValueConfig
	Logger *slog.Logger // default: discard
}

// Share keeps a replica's share of the account's budget in line with the
// plan the replicas share. Create it with NewShare before the worker runs
// (an automatic share starts at zero) and call Run.
type Share struct {
	store shareStore
	cfg   ShareConfig
	apply func(float64)
	log   *slog.Logger

	kick chan struct{} // a pause of our own: record it now, not at the next beat

	mu       sync.Mutex
	spending float64 // what the limiter was last told
	members  int     // replicas in the plan, us included
	beat     uint64
	lease    *time.Timer // fires when our last recorded beat is shareLease old
	seen     map[string]seenBeat

	// Used by Run alone: the plan's revision and its members' shares as
	// this replica last read or wrote them, and whether it recorded less
	// than its target (the others still hold more than theirs).
	lastRev    uint64
	lastShares map[string]float64
	waiting    bool
}

type seenBeat struct {
	beat uint64
	at   time.Time // when we first saw beat
}

// sharePlan is the document in ReplicasBucket.
type sharePlan struct {
	Members map[string]shareMember `json:"members"`
}

type shareMember struct {
	Share float64 `json:"share"`
	Beat  uint64  `json:"beat"`
	Fixed bool    `json:"fixed,omitempty"`
	// PauseMS is what was left, when this beat was written, of the pause
	// Kalshi gave this replica (Retry-After). The others take it from the
	// plan when the beat is new to them: a replica that missed the pause's
	// broadcast (reconnecting, or a message lost) holds its calls at its
	// next step all the same.
	PauseMS int64 `json:"pause_ms,omitempty"`
	// BeatMS is how often this replica beats. A replica of an earlier
	// version, which beat every second and spent its share until its beat
	// was 2 s old, records none: it is struck only after 3 s of silence,
	// or a rolling upgrade would give its share away while it spends it.
	BeatMS int64 `json:"beat_ms,omitempty"`
}

// deadAfter is how long m's beat must stay unchanged before m is struck:
// three of its beats (shareDead for this version's), never less than
// shareDead nor more than three of an earlier version's.
func (m shareMember) deadAfter() time.Duration {
	if m.BeatMS <= 0 {
		return 3 * time.Second
	}
	return min(max(3*time.Duration(m.BeatMS)*time.Millisecond, shareDead), 3*time.Second)
}

// shareStore is where the plan lives: the KV bucket, or a fake in tests.
type shareStore interface {
	// get returns the plan and its revision; nil and 0 when there is none.
	get(ctx context.Context) ([]byte, uint64, error)
	// put writes the plan if its revision is still rev (0: if there is
	// none), or fails with errShareConflict.
	put(ctx context.Context, doc []byte, rev uint64) (uint64, error)
	// remove deletes the plan if its revision is still rev.
	remove(ctx context.Context, rev uint64) error
}

var errShareConflict = errors.New("the replica plan changed meanwhile")

// NewShare returns the share of a replica whose plan lives in js's
// ReplicasBucket. An automatic share sets cfg.Limiter's share to 0 at once;
// a fixed one to cfg.Fixed.
func NewShare(js jetstream.JetStream, cfg ShareConfig) *Share {
	if cfg.Group == "" {
		cfg.Group = defaultGroup
	}
	return newShare(&kvShareStore{js: js, key: replicaPlanKey(cfg.Group), create: cfg.Bucket},
		cfg, cfg.Limiter.SetShare)
}

func newShare(store shareStore, cfg ShareConfig, apply func(float64)) *Share {
	if !(cfg.Fixed > 0) {
		cfg.Fixed = 0
	}
	cfg.Fixed = min(cfg.Fixed, 1)
	if cfg.ID == "" {
		cfg.ID = replicaID()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Share{store: store, cfg: cfg, apply: apply, log: cfg.Logger, seen: make(map[string]seenBeat), kick: make(chan struct{}, 1)}
	s.spend(cfg.Fixed)
	if cfg.Limiter != nil {
		cfg.Limiter.setOwnPaused(func() {
			select {
			case s.kick <- struct{}{}:
			default:
			}
		})
	}
	return s
}

func replicaID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Current reports the share this replica spends and how many replicas the
// plan counted when it last read it.
func (s *Share) Current() (share float64, replicas int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spending, s.members
}

// Run keeps the share up to date every ShareBeat until ctx ends (sooner
// while it waits for the others, or after a failed step: see sharePoll),
// then leaves the plan (spending nothing from then on) so the others take
// over its share at once. Cancel ctx only once the worker has stopped
// deleting.
func (s *Share) Run(ctx context.Context) {
	defer s.leave()
	t := time.NewTimer(0)
	defer t.Stop()
	var stepped time.Time // the last step's start
	failing, fails := false, 0
	for {
		kicked := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
			kicked = true
		}
		if !kicked && time.Since(stepped) < ShareBeat && fails == 0 && !s.planChanged(ctx) {
			t.Reset(min(sharePoll, ShareBeat-time.Since(stepped)))
			continue
		}
		stepped = time.Now()
		err := s.step(ctx)
		if err != nil {
			fails++
		} else {
			fails = 0
		}
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			level := slog.LevelWarn
			if s.cfg.Fixed == 0 {
				level = slog.LevelError
			}
			sh, _ := s.Current()
			s.log.Log(ctx, level, "cannot update the replica plan; an automatic share spends nothing until it can",
				"bucket", ReplicasBucket, "err", err, "share", sh)
		case err == nil && failing:
			failing = false
			s.log.Info("replica plan updated again", "bucket", ReplicasBucket)
		}
		switch {
		case fails > 0: // sharePoll, doubling up to a beat
			t.Reset(min(ShareBeat, sharePoll<<min(fails-1, 3)))
		case s.waiting:
			t.Reset(sharePoll)
		default:
			t.Reset(ShareBeat)
		}
	}
}

// planChanged reads the plan and reports whether this replica must step
// before its next beat: the plan's members or their shares are not what it
// last read or wrote. A failed read is not reported: the next beat's step
// tells. Run calls it only while waiting for the others.
func (s *Share) planChanged(ctx context.Context) bool {
	octx, cancel := context.WithTimeout(ctx, shareOpTime)
	defer cancel()
	doc, rev, err := s.store.get(octx)
	if err != nil || rev == s.lastRev && rev != 0 {
		return false
	}
	var plan sharePlan
	if doc != nil && json.Unmarshal(doc, &plan) != nil {
		return true // the step reports it
	}
	shares := plan.shares()
	if maps.Equal(shares, s.lastShares) {
		s.lastRev = rev // only beats changed
		return false
	}
	return true
}

// shares is every member's share, by replica.
func (p sharePlan) shares() map[string]float64 {
	m := make(map[string]float64, len(p.Members))
	for id, mb := range p.Members {
		m[id] = mb.Share
	}
	return m
}

// step reads the plan, strikes the replicas gone silent, works out this
// replica's share and records it with its beat, retrying a lost
// compare-and-set a few times.
func (s *Share) step(ctx context.Context) error {
	var err error
	for range 4 {
		if err = s.stepOnce(ctx); !errors.Is(err, errShareConflict) {
			return err
		}
	}
	return err
}

func (s *Share) stepOnce(ctx context.Context) error {
	octx, cancel := context.WithTimeout(ctx, shareOpTime)
	defer cancel()
	doc, rev, err := s.store.get(octx)
	if err != nil {
		return err
	}
	var plan sharePlan
	if doc != nil {
		if err := json.Unmarshal(doc, &plan); err != nil {
			return fmt.Errorf("replica plan: %w", err)
		}
	}
	if plan.Members == nil {
		plan.Members = make(map[string]shareMember)
	}
	now := time.Now()
	me, id := plan.Members[s.cfg.ID], s.cfg.ID
	delete(plan.Members, id)

	// Strike the silent; count the rest.
	fixedSum, others, autos := 0.0, 0.0, 1
	for mid, m := range plan.Members {
		seen, ok := s.seen[mid]
		if !ok || seen.beat != m.Beat {
			seen = seenBeat{beat: m.Beat, at: now}
			s.seen[mid] = seen
			s.heedPause(mid, m.PauseMS, now)
		}
		if now.Sub(seen.at) >= m.deadAfter() {
			delete(plan.Members, mid)
			delete(s.seen, mid)
			s.log.Info("replica silent; its share is given to the others", "replica", mid, "share", m.Share)
			continue
		}
		others += m.Share
		if m.Fixed {
			fixedSum += m.Share
		} else {
			autos++
		}
	}
	for mid := range s.seen {
		if _, ok := plan.Members[mid]; !ok {
			delete(s.seen, mid) // left, or struck by another replica
		}
	}

	target := s.cfg.Fixed
	if target == 0 {
		target = max(0, 1-fixedSum) / float64(autos)
	}
	s.mu.Lock()
	current := s.spending
	s.mu.Unlock()
	share := target
	raise := false
	if s.cfg.Fixed == 0 && target > me.Share {
		// Up to what the others leave, never below what we hold already.
		share = max(me.Share, min(target, 1-others))
		share = max(share, 0)
	}
	if share < current {
		s.spend(share) // lower before recording
	} else if share > current {
		raise = true
	}

	s.beat = max(s.beat, me.Beat) + 1
	plan.Members[id] = shareMember{Share: share, Beat: s.beat, Fixed: s.cfg.Fixed > 0, PauseMS: s.pauseLeft(now),
		BeatMS: ShareBeat.Milliseconds()}
	out, err := json.Marshal(plan)
	if err != nil {
		return err
	}
	sent := time.Now()
	newRev, err := s.store.put(octx, out, rev)
	if err != nil {
		return err
	}
	s.lastRev, s.lastShares = newRev, plan.shares()
	s.waiting = s.cfg.Fixed == 0 && share < target-1e-9
	s.renewLease(sent)
	s.mu.Lock()
	s.members = len(plan.Members)
	s.mu.Unlock()
	if raise {
		s.spend(share) // raise after recording
	}
	return nil
}

// pauseLeft is the pause of this replica's own to record, in whole
// milliseconds rounded up.
func (s *Share) pauseLeft(now time.Time) int64 {
	if s.cfg.Limiter == nil {
		return 0
	}
	left := s.cfg.Limiter.ownPauseLeft(now)
	return int64((left + time.Millisecond - 1) / time.Millisecond)
}

// heedPause holds this replica's calls for what another replica recorded
// of its pause in a beat new to this one, from now (later than it was
// written: the pause only lengthens), at most MaxPause.
func (s *Share) heedPause(from string, ms int64, now time.Time) {
	if ms <= 0 || s.cfg.Limiter == nil {
		return
	}
	until := now.Add(time.Duration(min(ms, MaxPause.Milliseconds())) * time.Millisecond)
	if s.cfg.Limiter.pauseUntil(until) {
		s.log.Info("paused by another replica's Retry-After, read in the replica plan", "replica", from, "for_ms", ms)
	}
}

// renewLease lets an automatic share be spent until shareLease after sent,
// when the beat just recorded was sent.
func (s *Share) renewLease(sent time.Time) {
	if s.cfg.Fixed > 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := shareLease - time.Since(sent)
	if s.lease == nil {
		s.lease = time.AfterFunc(d, s.lapse)
		return
	}
	s.lease.Reset(d)
}

// lapse: no beat recorded for shareLease; the others may strike us soon.
func (s *Share) lapse() {
	s.mu.Lock()
	was := s.spending
	s.mu.Unlock()
	if was > 0 {
		s.log.Warn("no beat recorded in the replica plan for too long: spending nothing until one is", "lease", shareLease)
	}
	s.spend(0)
}

// spend tells the limiter the share to spend now.
func (s *Share) spend(share float64) {
	s.mu.Lock()
	changed := math.Abs(share-s.spending) > 1e-12 || share == 0 && s.spending != 0
	s.spending = share
	s.mu.Unlock()
	s.apply(share)
	if changed {
		s.log.Info("delete budget share", "share", share, "fixed", s.cfg.Fixed > 0)
	}
}

// leave stops spending and strikes this replica from the plan.
func (s *Share) leave() {
	if s.cfg.Fixed == 0 {
		s.spend(0)
	}
	if s.cfg.Limiter != nil {
		s.cfg.Limiter.setOwnPaused(nil)
	}
	s.mu.Lock()
	if s.lease != nil {
		s.lease.Stop()
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*shareOpTime)
	defer cancel()
	for range 4 {
		doc, rev, err := s.store.get(ctx)
		if err != nil || doc == nil {
			return
		}
		var plan sharePlan
		if json.Unmarshal(doc, &plan) != nil {
			return
		}
		if _, ok := plan.Members[s.cfg.ID]; !ok {
			return
		}
		delete(plan.Members, s.cfg.ID)
		if len(plan.Members) == 0 {
			err = s.store.remove(ctx, rev)
		} else {
			out, _ := json.Marshal(plan)
			_, err = s.store.put(ctx, out, rev)
		}
		if !errors.Is(err, errShareConflict) {
			return
		}
	}
}
