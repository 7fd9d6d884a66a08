package fleet

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/kalshi"
	"github.com/revoker/revoker/worker/natstest"
)

const (
	stream   = "REQUESTS"
	consumer = "revoker"
)

var errStopped = errors.New("stopped")

// account is a Kalshi account's key listing that counts how often it is
// listed.
type account struct {
	keys   []kalshi.APIKey
	lists  atomic.Int32
	cutOff atomic.Bool
}

func (a *account) list(context.Context, context.Context, time.Time) ([]kalshi.APIKey, error) {
	a.lists.Add(1)
	return a.keys, nil
}

// replica is a Replica of the fleet on its own connection to url, started
// until the test ends.
func replica(t *testing.T, url string, a *account, ackWait time.Duration) (r *Replica, stop func()) {
	t.Helper()
	r = New(Config{
		Conn:           natstest.Connect(t, url),
		RequestsStream: stream,
		Consumer:       consumer,
		List:           a.list,
		Stopped:        errStopped,
		CutOff:         a.cutOff.Load,
		AckWait:        func() time.Duration { return ackWait },
		Logger:         slog.New(slog.DiscardHandler),
	})
	var once atomic.Bool
	s := r.Start(context.Background())
	stop = func() {
		if once.CompareAndSwap(false, true) {
			s()
		}
	}
	t.Cleanup(stop)
	return r, stop
}

// hear waits until each replica has heard every other one beat.
func hear(t *testing.T, rs ...*Replica) {
	t.Helper()
	natstest.WaitFor(t, 10*time.Second, "the replicas to hear each other", func() bool {
		for _, r := range rs {
			r.mu.Lock()
			n := len(r.peers)
			r.mu.Unlock()
			if n != len(rs)-1 {
				return false
			}
		}
		return true
	})
}

// A replica that falls silent holding a delivery has it NAKed by the one
// left, and JetStream delivers it again long before its ack wait.
func TestSilentReplicasDeliveryIsDeliveredAgain(t *testing.T) {
	s := natstest.Start(t)
	nc := natstest.Connect(t, s.URL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const ackWait = time.Minute
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{"requests"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: consumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "requests", []byte("r1")); err != nil {
		t.Fatal(err)
	}
	a := &account{}
	survivor, _ := replica(t, s.URL(), a, ackWait)
	dying, die := replica(t, s.URL(), a, ackWait)
	hear(t, survivor, dying)

	msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var taken jetstream.Msg
	for m := range msgs.Messages() {
		taken = m
	}
	if taken == nil {
		t.Fatalf("no delivery: %v", msgs.Error())
	}
	dying.Hold(taken.Reply())
	// The survivor has heard of the delivery, then the holder falls silent.
	natstest.WaitFor(t, 5*time.Second, "the survivor to hear what the other holds", func() bool {
		survivor.mu.Lock()
		defer survivor.mu.Unlock()
		return len(survivor.peers[dying.id].held) == 1
	})
	died := time.Now()
	die()

	var again jetstream.Msg
	natstest.WaitFor(t, ackWait/2, "the delivery again", func() bool {
		msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			return false
		}
		for m := range msgs.Messages() {
			again = m
		}
		return again != nil
	})
	meta, err := again.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if meta.NumDelivered != 2 || string(again.Data()) != "r1" {
		t.Errorf("delivered again: %q, delivery %d; want r1's second", again.Data(), meta.NumDelivered)
	}
	t.Logf("delivered again %v after the holder fell silent (ack wait %v)", time.Since(died).Round(100*time.Millisecond), ackWait)
}

// Replicas that hear each other list the account once between them: the
// lister lists, the other asks it. A lister cut off from Kalshi answers at
// once that it cannot, and the asker lists for itself.
func TestReplicasShareOneListing(t *testing.T) {
	s := natstest.Start(t)
	a := &account{keys: []kalshi.APIKey{{ID: "k1"}, {ID: "k2"}}}
	r1, _ := replica(t, s.URL(), a, time.Minute)
	r2, _ := replica(t, s.URL(), a, time.Minute)
	hear(t, r1, r2)
	lister, asker := r1, r2
	if r2.id < r1.id {
		lister, asker = r2, r1
	}
	ctx := context.Background()
	for _, r := range []*Replica{asker, lister, asker} {
		k, err := r.Listed(ctx, ctx, time.Now(), "k1")
		if err != nil || k == nil || k.ID != "k1" {
			t.Fatalf("Listed(k1): %v, %v", k, err)
		}
		if k, err := r.Listed(ctx, ctx, time.Now(), "k9"); err != nil || k != nil {
			t.Fatalf("Listed(k9), not listed: %v, %v", k, err)
		}
	}
	if n := a.lists.Load(); n != 1 {
		t.Errorf("%d listings for two replicas within %v, want 1", n, listingMaxAge)
	}

	a.cutOff.Store(true)
	a.lists.Store(0)
	notBefore := time.Now() // newer than any listing kept
	if _, _, ok := asker.SharedKeys(ctx, time.Now(), notBefore, []string{"k1"}); ok {
		t.Error("a lister cut off from Kalshi gave a listing")
	}
	if n := a.lists.Load(); n != 0 {
		t.Errorf("a lister cut off from Kalshi listed %d times", n)
	}
	if k, err := asker.Listed(ctx, ctx, time.Now(), "k2"); err != nil || k == nil || a.lists.Load() != 1 {
		t.Errorf("the asker listing for itself: %v, %v, %d listings", k, err, a.lists.Load())
	}
}

// A caller that waited for another's listing, which failed, lists itself
// within its own budget: the other's failure (a confirmation round's, with
// one attempt's budget) is not its own (it failed whole requests with
// retries_exhausted under load).
func TestAFailedSharedListingIsNotTheWaitersFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var calls atomic.Int32
		r := New(Config{
			List: func(ctx, stop context.Context, storedAt time.Time) ([]kalshi.APIKey, error) {
				if calls.Add(1) == 1 {
					<-release
					return nil, errors.New("the first caller's budget ran out")
				}
				return []kalshi.APIKey{{ID: "k1"}}, nil
			},
			Stopped: errStopped,
			Logger:  slog.New(slog.DiscardHandler),
		})
		ctx := context.Background()
		first, second := make(chan error, 1), make(chan error, 1)
		go func() {
			_, _, err := r.Keys(ctx, ctx, time.Now(), time.Now())
			first <- err
		}()
		synctest.Wait() // the first caller lists, held
		var got map[string]kalshi.APIKey
		go func() {
			var err error
			got, _, err = r.Keys(ctx, ctx, time.Now(), time.Now().Add(-time.Second))
			second <- err
		}()
		synctest.Wait() // the second waits for the first's listing
		close(release)
		if err := <-first; err == nil {
			t.Error("the first caller's listing failed, and it was not told")
		}
		if err := <-second; err != nil || got["k1"].ID != "k1" || calls.Load() != 2 {
			t.Errorf("the waiter: %v, %v after %d listings; want its own listing", err, got, calls.Load())
		}
	})
}
