package worker

import (
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// settle is the one place that decides how a delivery ends:
//   - not decided, waiting for another copy, or not stored: back to the
//     stream after a delay that grows with the deliveries, never at once;
//   - scheduled for later: back to the stream until its not_before;
//   - stored success: ack;
//   - stored refusal or failure: terminate, with the error as the reason.
//
// Both ack and terminate remove the request from the work queue.
func (w *Worker) settle(msg jetstream.Msg, meta *jetstream.MsgMetadata, v verdict, stored bool) {
	var err error
	switch {
	case v.res == nil && !v.waiting:
		err = msg.NakWithDelay(w.cfg.RequeueDelay)
	case v.delay > 0:
		err = msg.NakWithDelay(v.delay)
	case !stored:
		err = msg.NakWithDelay(requeueDelay(w.cfg.RequeueDelay, meta.NumDelivered))
	case v.res.Outcome.Succeeded():
		// Not waiting for the server to confirm: a lost ack redelivers the
		// request, which finds its decision in the ledger and stores the
		// same result again, dropped as a duplicate.
		err = msg.Ack()
	default:
		err = msg.TermWithReason(fmt.Sprintf("%s: %.200s", v.res.Error.Code, v.res.Error.Message))
	}
	if err != nil {
		// The ack wait redelivers it; the stored result makes that harmless.
		w.cfg.Logger.Warn("cannot settle delivery", "err", err, "stream_seq", meta.Sequence.Stream)
	}
}

// requeueDelay doubles base for every earlier delivery, up to 30 s.
func requeueDelay(base time.Duration, deliveries uint64) time.Duration {
	d := base
	for i := uint64(1); i < deliveries && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

// keepAlive tells the server every interval that msg is still being
// worked on, until the returned stop is called.
func keepAlive(msg jetstream.Msg, interval time.Duration) (stop func()) {
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	mu.Lock() // the callback reads t
	defer mu.Unlock()
	t = time.AfterFunc(interval, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		_ = msg.InProgress()
		t.Reset(interval)
	})
	return func() {
		mu.Lock()
		stopped = true
		mu.Unlock()
		t.Stop()
	}
}
