package budget

import (
	"context"
	"testing"
	"time"

	"github.com/revoker/revoker/worker/natstest"
)

// A replica frozen (SIGSTOP) while another broadcast a pause may find the
// broadcast unread on waking, and a delete may run first (chaos seed
// 391272). After a freeze every call waits while the fleet is asked again
// for the pause in force, and the answer holds it.
func TestCallsAfterAFreezeWaitForThePauseInForce(t *testing.T) {
	srv := natstest.Start(t)
	join := func(l *Limiter) *Fleet {
		nc := natstest.Connect(t, srv.URL())
		f, err := JoinFleet(nc, FleetConfig{Group: "freeze", Limiter: l})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Leave)
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		return f
	}
	a, b := NewLimiter(0, 0), NewLimiter(0, 0)
	join(a)
	fb := join(b)
	natstest.WaitFor(t, 5*time.Second, "b's freeze watch", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return !b.awake.IsZero()
	})

	// b misses a's broadcast, as a frozen process reads none.
	if err := fb.sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	a.Pause(3 * time.Second)
	until := a.PausedUntil()
	if err := fb.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var err error
	if fb.sub, err = fb.nc.Subscribe(fb.subject, fb.receive); err != nil {
		t.Fatal(err)
	}
	if !b.PausedUntil().IsZero() {
		t.Fatal("b heard the pause: the test proves nothing")
	}

	// b wakes: its last tick is two seconds old.
	fb.stopTicks <- struct{}{} // its ticker stops for the test
	b.mu.Lock()
	b.awake = time.Now().Add(-2 * time.Second)
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if left := time.Until(until); left > 100*time.Millisecond {
		t.Errorf("b's call went %v before the end of a's pause", left.Round(time.Millisecond))
	}
}
