package chaos

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// proxies is the toxiproxy library embedded in the test process: no
// toxiproxy server, no HTTP API, only its proxies and toxics.
type proxies struct {
	api *toxiproxy.ApiServer
}

func newProxies() *proxies {
	return &proxies{api: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())}
}

// link is one proxy: a replica's way to one NATS node or to Kalshi.
type link struct {
	name   string
	p      *toxiproxy.Proxy
	listen string // the address it took at first: toxiproxy rewrites p.Listen on every start
	mu     sync.Mutex
	up     bool
}

// open starts a proxy on a free loopback port to upstream.
func (ps *proxies) open(t *testing.T, name, upstream string) *link {
	t.Helper()
	p := toxiproxy.NewProxy(ps.api, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("proxy %s: %v", name, err)
	}
	l := &link{name: name, p: p, listen: p.Listen, up: true}
	t.Cleanup(l.p.Stop)
	return l
}

// addr is where the replica connects; it stays the same across cuts.
func (l *link) addr() string { return l.listen }

// cut closes the proxy's listener and every connection through it: the
// replica's side sees its connections drop and new ones refused.
func (l *link) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.up {
		l.p.Stop()
		l.up = false
	}
}

// restore listens again on the same address.
func (l *link) restore(t *testing.T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.up {
		if err := l.p.Start(); err != nil {
			t.Errorf("proxy %s: restart: %v", l.name, err)
			return
		}
		l.up = true
	}
}

// addToxic adds a toxic ("latency", "timeout", ...) under a unique name.
func (l *link) addToxic(t *testing.T, name, typ, stream string, attrs map[string]int64) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, `{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":{`, name, typ, stream)
	first := true
	for k, v := range attrs {
		if !first {
			b.WriteByte(',')
		}
		first = false
		fmt.Fprintf(&b, "%q:%d", k, v)
	}
	b.WriteString("}}")
	if _, err := l.p.Toxics.AddToxicJson(strings.NewReader(b.String())); err != nil {
		t.Errorf("proxy %s: toxic %s: %v", l.name, name, err)
	}
}

func (l *link) removeToxic(t *testing.T, name string) {
	if err := l.p.Toxics.RemoveToxic(t.Context(), name); err != nil {
		t.Errorf("proxy %s: remove toxic %s: %v", l.name, name, err)
	}
}

// deliveryLog records, from the NATS wire between the cluster and each
// replica, which request (by stream sequence) JetStream delivered to which
// replica and when: the reply subject of every pulled message names the
// stream sequence. It is how the test knows, from outside, what a replica
// held when it was killed.
type deliveryLog struct {
	mu      sync.Mutex
	all     map[uint64][]delivery // by stream sequence, in the order seen
	settled map[uint64][]delivery // acks, NAKs and terminations sent, likewise
}

type delivery struct {
	replica int
	at      time.Time
}

func (d *deliveryLog) add(seq uint64, replica int, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.all[seq] = append(d.all[seq], delivery{replica, at})
}

func (d *deliveryLog) settle(seq uint64, replica int, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.settled[seq] = append(d.settled[seq], delivery{replica, at})
}

// heldAt returns the stream sequences whose latest delivery up to at went
// to replica, and that replica had not settled (acked, NAKed, terminated)
// since.
func (d *deliveryLog) heldAt(replica int, at time.Time) []uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var seqs []uint64
	for seq, ds := range d.all {
		var latest *delivery
		for i := range ds {
			if !ds[i].at.After(at) && (latest == nil || ds[i].at.After(latest.at)) {
				latest = &ds[i]
			}
		}
		if latest == nil || latest.replica != replica {
			continue
		}
		settled := false
		for _, st := range d.settled[seq] {
			if st.replica == replica && !st.at.Before(latest.at) && !st.at.After(at) {
				settled = true
			}
		}
		if !settled {
			seqs = append(seqs, seq)
		}
	}
	return seqs
}

// sniffers maps a SniffToxic's Log attribute to its log and replica; the
// toxic is built by toxiproxy from JSON, so it can carry only numbers.
var (
	sniffers   sync.Map // int64 -> sniffTarget
	snifferIDs atomic.Int64
)

type sniffTarget struct {
	log     *deliveryLog
	replica int
	marker  []byte // "<stream>.<consumer>." in an ack reply subject
}

// Sniffer directions: deliveries come from the server, acks from the
// replica.
const (
	sniffDeliveries = 0
	sniffAcks       = 1
)

func registerSniffer(log *deliveryLog, replica int, stream, consumer string) int64 {
	id := snifferIDs.Add(1)
	sniffers.Store(id, sniffTarget{log, replica, []byte(stream + "." + consumer + ".")})
	return id
}

// SniffToxic passes everything through unchanged and records each
// JetStream delivery it sees (server to client) in its deliveryLog.
type SniffToxic struct {
	Log  int64 `json:"log"`
	Acks int64 `json:"acks"` // sniffAcks: the client's side, "PUB $JS.ACK.… +ACK"
}

func init() { toxics.Register("chaos_sniff", new(SniffToxic)) }

// Pipe scans the chunks for "$JS.ACK.…<stream>.<consumer>.<delivered>.<sseq>."
// and forwards them; a subject split between two chunks is caught by
// keeping the previous chunk's tail.
func (s *SniffToxic) Pipe(stub *toxics.ToxicStub) {
	v, _ := sniffers.Load(s.Log)
	target, _ := v.(sniffTarget)
	var carry []byte
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if target.log != nil {
				buf := append(carry, c.Data...)
				scanDeliveries(buf, target, c.Timestamp, s.Acks == sniffAcks)
				// Keep enough of the tail for a subject cut in two, and
				// never rescan a whole subject twice.
				keep := min(len(buf), 160)
				if i := bytes.LastIndex(buf[len(buf)-keep:], []byte("$JS.ACK.")); i >= 0 {
					carry = append([]byte(nil), buf[len(buf)-keep+i:]...)
					if bytes.IndexByte(carry, ' ') >= 0 || bytes.IndexByte(carry, '\r') >= 0 {
						carry = nil // complete: already scanned
					}
				} else {
					carry = nil
				}
			}
			stub.Output <- c
		}
	}
}

func scanDeliveries(buf []byte, target sniffTarget, at time.Time, acks bool) {
	if at.IsZero() {
		at = time.Now()
	}
	for {
		i := bytes.Index(buf, []byte("$JS.ACK."))
		if i < 0 {
			return
		}
		buf = buf[i+len("$JS.ACK."):]
		end := bytes.IndexAny(buf, " \r\n")
		if end < 0 {
			return // incomplete: the next chunk completes it
		}
		subject := buf[:end]
		j := bytes.Index(subject, target.marker)
		if j < 0 {
			continue
		}
		tokens := strings.Split(string(subject[j+len(target.marker):]), ".")
		if len(tokens) < 2 {
			continue
		}
		seq, err := strconv.ParseUint(tokens[1], 10, 64)
		if err != nil {
			continue
		}
		if !acks {
			target.log.add(seq, target.replica, at)
			continue
		}
		// "PUB <subject> <size>\r\n<payload>": an ack, a NAK or a
		// termination settles the delivery; +WPI (in progress) does not.
		rest := buf[end:]
		if i := bytes.Index(rest, []byte("\r\n")); i >= 0 && len(rest) > i+2 {
			if !bytes.HasPrefix(rest[i+2:], []byte("+WPI")) {
				target.log.settle(seq, target.replica, at)
			}
		}
	}
}
