package fleet

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/revoker/revoker/worker/budget"
)

// Fast failover. JetStream redelivers a dead replica's messages only when
// their ack wait runs out (up to 10 s after its last keep-alive). Instead,
// every replica says every heldBeat which deliveries it holds, on
// revoker.fleet.held.<consumer>; when one falls silent for heldStrike, one
// survivor (the live replica with the lowest id) NAKs them on its behalf,
// and they are delivered again at once. A replica that was only paused and
// wakes up finds its work moved on: the ledger's compare-and-sets make the
// two deliveries of one request agree on one decision and one result.
const (
	heldBeat   = time.Second
	heldStrike = 3 * heldBeat
	// maxHeldAnnounced bounds one announcement, and what a hostile one can
	// make a survivor NAK.
	maxHeldAnnounced = 1024
)

type heldBeatMsg struct {
	ID   string   `json:"id"`
	Held []string `json:"held"` // the ack subjects of the deliveries it holds
	// Took: Held is one delivery just taken, to add to what the others know
	// the replica holds; otherwise Held is all it holds.
	Took bool `json:"took,omitempty"`
}

type peer struct {
	seen time.Time
	held []string
	// gone: a question to it got "no responders" (its NATS connection is
	// gone). It is not asked again until it beats again; the failover
	// still waits for heldStrike.
	gone bool
}

// forget marks peer id gone.
func (r *Replica) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.peers[id]; ok {
		p.gone = true
		r.peers[id] = p
	}
}

// Hold notes a delivery in hand (reply is its ack subject) until the
// returned release is called, and tells the others at once, so that a
// replica killed right after a pull is known to hold it. What it no longer
// holds they learn from its next beat.
func (r *Replica) Hold(reply string) (release func()) {
	if reply == "" {
		return func() {}
	}
	r.mu.Lock()
	r.held[reply] = struct{}{}
	r.mu.Unlock()
	if r.cfg.Conn != nil {
		b, _ := json.Marshal(heldBeatMsg{ID: r.id, Held: []string{reply}, Took: true})
		_ = r.cfg.Conn.Publish(r.heldSubject(), b)
	}
	return func() {
		r.mu.Lock()
		delete(r.held, reply)
		r.mu.Unlock()
	}
}

// heldSubject is where the replicas of one consumer announce what they hold.
func (r *Replica) heldSubject() string { return budget.FleetSubject + ".held." + r.cfg.Consumer }

// failoverLoop announces what this replica holds and NAKs what a silent one
// held, until ctx ends.
func (r *Replica) failoverLoop(ctx context.Context) {
	nc := r.cfg.Conn
	var naks sync.WaitGroup
	defer naks.Wait()
	sub, err := nc.Subscribe(r.heldSubject(), func(m *nats.Msg) {
		var b heldBeatMsg
		if json.Unmarshal(m.Data, &b) != nil || b.ID == "" || b.ID == r.id || len(b.Held) > maxHeldAnnounced {
			return
		}
		b.Held = slices.DeleteFunc(b.Held, func(s string) bool { return !r.isOurAck(s) })
		r.mu.Lock()
		if b.Took {
			p := r.peers[b.ID]
			if len(p.held) < maxHeldAnnounced {
				b.Held = append(p.held, b.Held...)
			}
		}
		r.peers[b.ID] = peer{seen: time.Now(), held: b.Held}
		r.mu.Unlock()
	})
	if err != nil {
		r.cfg.Logger.Warn("cannot hear the other replicas; a dead one's requests wait for their ack wait", "err", err)
		return
	}
	defer func() { _ = sub.Unsubscribe() }()
	t := time.NewTicker(heldBeat)
	defer t.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		r.mu.Lock()
		beat, _ := json.Marshal(heldBeatMsg{ID: r.id, Held: slices.Collect(maps.Keys(r.held))})
		var struck []peer
		now := time.Now()
		for id, p := range r.peers {
			if now.Sub(p.seen) > heldStrike {
				delete(r.peers, id)
				struck = append(struck, p)
			}
		}
		// The live replica with the lowest id speaks for the dead.
		speaker := !slices.ContainsFunc(slices.Collect(maps.Keys(r.peers)), func(id string) bool { return id < r.id })
		r.mu.Unlock()
		_ = nc.Publish(r.heldSubject(), beat)
		if !speaker {
			continue
		}
		for _, p := range struck {
			if len(p.held) > 0 {
				r.cfg.Logger.Warn("a replica fell silent; its requests are delivered again now", "requests", len(p.held))
				naks.Go(func() { r.nakForDead(ctx, nc, p.held) })
			}
		}
	}
}

// nakRetry is how soon an unanswered NAK on a dead replica's behalf is sent
// again.
const nakRetry = 250 * time.Millisecond

// nakForDead NAKs a dead replica's deliveries until the consumer's leader
// confirms each one (JetStream answers an ack that asks for a reply). A NAK
// sent while the leader is being elected after a NATS node loss would
// otherwise be lost, and the request would wait out its ack wait. After
// one ack wait JetStream redelivers them anyway.
func (r *Replica) nakForDead(ctx context.Context, nc *nats.Conn, held []string) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.AckWait())
	defer cancel()
	for len(held) > 0 {
		held = slices.DeleteFunc(held, func(reply string) bool {
			rctx, cancel := context.WithTimeout(ctx, nakRetry)
			defer cancel()
			_, err := nc.RequestWithContext(rctx, reply, []byte("-NAK"))
			return err == nil
		})
		if len(held) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(nakRetry):
		}
	}
}

// isOurAck reports whether s is an ack subject of this worker's consumer:
// a survivor publishes nothing else on a dead replica's behalf.
func (r *Replica) isOurAck(s string) bool {
	if strings.ContainsAny(s, " \t\r\n*>") {
		return false
	}
	return strings.HasPrefix(s, "$JS.ACK."+r.cfg.RequestsStream+"."+r.cfg.Consumer+".") ||
		strings.HasPrefix(s, "$JS.ACK.") && strings.Contains(s, "."+r.cfg.RequestsStream+"."+r.cfg.Consumer+".")
}
