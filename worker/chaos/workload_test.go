package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// kind is what a request names, and so what its one result may be.
type kind int

const (
	listed    kind = iota // a key the account lists
	unknown               // a key that never existed
	guardSelf             // the worker's own key, in some spelling
	guardProt             // a protected key, in some spelling
)

func (k kind) String() string {
	return [...]string{"listed", "unknown", "self", "protected"}[k]
}

// request is one request id of the workload.
type request struct {
	id   string
	key  string // as sent
	kind kind
}

// message is one publish: a request's body, with or without Nats-Msg-Id
// (without, the stream keeps a second copy and only the worker can keep
// the result single).
type message struct {
	req   *request
	msgID bool
}

// workload is a seed's requests and the order they are published in.
type workload struct {
	reqs     []*request
	byID     map[string]*request
	msgs     []message
	listed   []string // the keys the account listed, requested
	twoIDs   int      // keys requested under two ids
	repeated int      // extra copies published
}

// newWorkload makes n listed keys, each requested once; some requested
// again under a second id; unknown keys; the worker's own and the
// protected keys in upper and lower case; and repeats of some requests,
// exactly (same Nats-Msg-Id: the stream drops it) and as a second copy.
func (w *world) newWorkload(rng *rand.Rand, n int) *workload {
	wl := &workload{byID: make(map[string]*request)}
	add := func(key string, k kind) *request {
		r := &request{id: fmt.Sprintf("chaos-%03d", len(wl.reqs)), key: key, kind: k}
		wl.reqs = append(wl.reqs, r)
		wl.byID[r.id] = r
		wl.msgs = append(wl.msgs, message{r, true})
		return r
	}
	wl.listed = w.addKeys("chaos", n)
	for _, k := range wl.listed {
		add(k, listed)
	}
	for _, k := range wl.listed[:n/6] {
		add(strings.ToUpper(k), listed) // the same key under a second id
		wl.twoIDs++
	}
	for range n / 5 {
		add(randomUUID(rng), unknown)
	}
	add(w.selfID, guardSelf)
	add(strings.ToUpper(w.selfID), guardSelf)
	for _, k := range w.protected {
		add(k, guardProt)
		add(strings.ToUpper(k), guardProt)
	}
	rng.Shuffle(len(wl.msgs), func(i, j int) { wl.msgs[i], wl.msgs[j] = wl.msgs[j], wl.msgs[i] })
	// Half the keys under two ids open the workload: a replica's pull
	// takes up to its concurrency (4) at once, so the first ids go in
	// fours followed by their second ids, which the idle fleet's next
	// waiting pull takes on another replica at the same time. The others
	// meet at random.
	var front, firsts, seconds []message
	for _, r := range wl.reqs[n : n+n/12] {
		for _, q := range wl.reqs[:n] {
			if q.key == strings.ToLower(r.key) {
				firsts, seconds = append(firsts, message{q, true}), append(seconds, message{r, true})
			}
		}
		if len(firsts) == 4 {
			front, firsts, seconds = append(append(front, firsts...), seconds...), nil, nil
		}
	}
	front = append(append(front, firsts...), seconds...)
	rest := slices.DeleteFunc(wl.msgs, func(m message) bool {
		return slices.ContainsFunc(front, func(f message) bool { return f.req == m.req })
	})
	wl.msgs = append(front, rest...)
	for i := range n / 8 {
		r := wl.reqs[rng.IntN(len(wl.reqs))]
		at := rng.IntN(len(wl.msgs) + 1)
		// Alternate an exact repeat and a copy without Nats-Msg-Id.
		wl.msgs = append(wl.msgs[:at], append([]message{{r, i%2 == 0}}, wl.msgs[at:]...)...)
		wl.repeated++
	}
	return wl
}

func randomUUID(rng *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func (m message) nats() *nats.Msg {
	body, _ := json.Marshal(map[string]string{
		"id": m.req.id, "api_key_id": m.req.key, "reason": "chaos test", "requested_by": "go test", "source": "chaos",
	})
	msg := nats.NewMsg(requestsSubject)
	msg.Data = body
	if m.msgID {
		msg.Header.Set(jetstream.MsgIDHeader, m.req.id)
	}
	return msg
}

// published is what the publisher learnt: the stream sequence of each
// stored message and when the last one was stored.
type published struct {
	mu   sync.Mutex
	seqs map[uint64]string // stream sequence -> request id
	last time.Time
	errs int
}

// publish stores the messages in batches over spread, retrying each until
// JetStream acknowledges it or ctx ends. A message with Nats-Msg-Id is
// stored once however often it is sent; a copy without one may be stored
// twice when an ack is lost, which is one more repeat.
func (w *world) publish(ctx context.Context, wl *workload, batches int, spread time.Duration, pub *published) {
	per := (len(wl.msgs) + batches - 1) / batches
	began := time.Now()
	for b := 0; b*per < len(wl.msgs); b++ {
		if !waitUntil(ctx, began.Add(spread*time.Duration(b)/time.Duration(batches))) {
			return
		}
		for _, m := range wl.msgs[b*per : min((b+1)*per, len(wl.msgs))] {
			for {
				if ctx.Err() != nil {
					return
				}
				pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				ack, err := w.js.PublishMsg(pctx, m.nats())
				cancel()
				if err == nil {
					pub.mu.Lock()
					if !ack.Duplicate {
						pub.seqs[ack.Sequence] = m.req.id
					}
					pub.last = time.Now()
					pub.mu.Unlock()
					break
				}
				pub.mu.Lock()
				pub.errs++
				pub.mu.Unlock()
				waitUntil(ctx, time.Now().Add(100*time.Millisecond))
			}
		}
	}
}

// waitUntil waits for the time at or for ctx, and reports whether the time
// came first.
func waitUntil(ctx context.Context, at time.Time) bool {
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}
