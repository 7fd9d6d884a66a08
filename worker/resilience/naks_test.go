package resilience_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/revoker/revoker/worker/natstest"
)

// delivery is one delivery of a stream message to the shared consumer, as
// its ack subject names it: the stream sequence and the delivery count.
type delivery struct {
	seq, count uint64
}

// parseAck reads a delivery from an ack subject in either format:
// $JS.ACK.<stream>.<consumer>.<count>.<sseq>.<cseq>.<ts>.<pending> or
// $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<count>.<sseq>.<cseq>.<ts>.<pending>.<token>.
func parseAck(subject string) (delivery, bool) {
	tok := strings.Split(subject, ".")
	var i int
	switch len(tok) {
	case 9:
		i = 4
	case 11, 12:
		i = 6
	default:
		return delivery{}, false
	}
	count, err1 := strconv.ParseUint(tok[i], 10, 64)
	seq, err2 := strconv.ParseUint(tok[i+1], 10, 64)
	return delivery{seq: seq, count: count}, err1 == nil && err2 == nil
}

// fleetWatch hears, from outside the replicas, what each one announces it
// holds (revoker.fleet.held.<consumer>) and the NAKs the consumer's leader
// processed ($JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED: JetStream's own record,
// with the delivery count of the ack subject the NAK was sent on).
type fleetWatch struct {
	mu    sync.Mutex
	held  map[string]map[delivery]bool      // replica id -> deliveries it holds
	took  map[string]map[delivery]time.Time // replica id -> when it first announced each delivery
	naked map[delivery]time.Time            // the NAK's server time
	order []string                          // replica ids in the order first heard
}

// watchFleet listens on every connection in conns (one per node when a node
// is to be killed: what one misses while it reconnects, another hears).
func watchFleet(t testing.TB, conns []*nats.Conn, stream, consumer string) *fleetWatch {
	t.Helper()
	fw := &fleetWatch{held: make(map[string]map[delivery]bool), took: make(map[string]map[delivery]time.Time), naked: make(map[delivery]time.Time)}
	for _, nc := range conns {
		held, err := nc.Subscribe("revoker.fleet.held."+consumer, fw.heard)
		if err != nil {
			t.Fatal(err)
		}
		naks, err := nc.Subscribe(fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED.%s.%s", stream, consumer), fw.nak)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = held.Unsubscribe(); _ = naks.Unsubscribe() })
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	return fw
}

// heard takes in one announcement: all a replica holds, or one delivery it
// just took. The same announcement heard twice changes nothing.
func (fw *fleetWatch) heard(m *nats.Msg) {
	at := time.Now()
	var b struct {
		ID   string   `json:"id"`
		Held []string `json:"held"`
		Took bool     `json:"took"`
	}
	if json.Unmarshal(m.Data, &b) != nil || b.ID == "" {
		return
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if _, ok := fw.held[b.ID]; !ok {
		fw.order = append(fw.order, b.ID)
		fw.took[b.ID] = make(map[delivery]time.Time)
	}
	set := fw.held[b.ID]
	if !b.Took || set == nil {
		set = make(map[delivery]bool)
	}
	for _, s := range b.Held {
		d, ok := parseAck(s)
		if !ok {
			continue
		}
		set[d] = true
		if _, ok := fw.took[b.ID][d]; !ok {
			fw.took[b.ID][d] = at
		}
	}
	fw.held[b.ID] = set
}

// nak takes in one NAK advisory.
func (fw *fleetWatch) nak(m *nats.Msg) {
	var a struct {
		Time       time.Time `json:"timestamp"`
		StreamSeq  uint64    `json:"stream_seq"`
		Deliveries uint64    `json:"deliveries"`
	}
	if json.Unmarshal(m.Data, &a) != nil {
		return
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	d := delivery{a.StreamSeq, a.Deliveries}
	if t, ok := fw.naked[d]; !ok || a.Time.Before(t) {
		fw.naked[d] = a.Time
	}
}

// replica waits for the n-th replica to announce itself and returns its id
// (replicas started one at a time, each after the last one was heard).
func (fw *fleetWatch) replica(t testing.TB, n int) string {
	t.Helper()
	var id string
	natstest.WaitFor(t, 15*time.Second, fmt.Sprintf("replica %d's first announcement", n), func() bool {
		fw.mu.Lock()
		defer fw.mu.Unlock()
		if len(fw.order) >= n {
			id = fw.order[n-1]
		}
		return id != ""
	})
	return id
}

// holding is what replica id last said it holds.
func (fw *fleetWatch) holding(id string) []delivery {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	var out []delivery
	for d := range fw.held[id] {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

// checkNAKedForDead holds the fast failover to its mechanism, not to a time:
// every delivery the dead replica held that the survivor took again was
// NAKed first, on the dead one's ack subject (JetStream's advisory names its
// delivery count), so its redelivery did not wait out the ack wait. It
// returns how many of the dead replica's deliveries were taken again.
func (fw *fleetWatch) checkNAKedForDead(t testing.TB, dead []delivery, survivor string) int {
	t.Helper()
	fw.mu.Lock()
	defer fw.mu.Unlock()
	again := 0
	for _, d := range dead {
		// The survivor's first delivery of the message after the dead one's.
		var next delivery
		var at time.Time
		for s, when := range fw.took[survivor] {
			if s.seq == d.seq && s.count > d.count && (at.IsZero() || when.Before(at)) {
				next, at = s, when
			}
		}
		if at.IsZero() {
			continue // settled before the kill: nobody took it again
		}
		again++
		naked, ok := fw.naked[d]
		switch {
		case !ok:
			t.Errorf("message %d: held by the killed replica (delivery %d) and taken again (delivery %d) with no NAK on its behalf: it waited out its ack wait",
				d.seq, d.count, next.count)
		case !naked.Before(at):
			t.Errorf("message %d: NAKed on the killed replica's behalf at %s, after the survivor took it again at %s: its ack wait ran out first",
				d.seq, naked.Format(time.StampMilli), at.Format(time.StampMilli))
		}
	}
	return again
}
