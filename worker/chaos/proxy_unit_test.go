package chaos

import (
	"maps"
	"slices"
	"testing"
	"time"
)

// TestScanDeliveries reads JetStream deliveries and their settlements off
// the NATS wire, as the sniffing proxies do: a pulled message names its
// stream sequence in its ack subject; +WPI does not settle it.
func TestScanDeliveries(t *testing.T) {
	d := &deliveryLog{all: make(map[uint64][]delivery), settled: make(map[uint64][]delivery)}
	target := sniffTarget{log: d, replica: 2, marker: []byte("KEY_REVOKE_REQUESTS.revoker.")}
	t0 := time.Unix(1000, 0)
	server := "MSG _INBOX.worker.x 1 $JS.ACK.KEY_REVOKE_REQUESTS.revoker.1.17.5.1700000000.3 4\r\nbody\r\n" +
		"HMSG _INBOX.worker.x 1 $JS.ACK.KEY_REVOKE_REQUESTS.revoker.2.18.6.1700000000.2 12 16\r\nNATS/1.0\r\n\r\nbody\r\n" +
		"MSG _INBOX.worker.x 1 $JS.ACK.OTHER.revoker.1.19.7.1700000000.2 4\r\nbody\r\n"
	scanDeliveries([]byte(server), target, t0, false)
	if got := slices.Sorted(maps.Keys(d.all)); !slices.Equal(got, []uint64{17, 18}) {
		t.Fatalf("deliveries %v, want [17 18]", got)
	}
	if held := slices.Sorted(slices.Values(d.heldAt(2, t0))); !slices.Equal(held, []uint64{17, 18}) {
		t.Fatalf("held %v, want [17 18]", held)
	}
	client := "PUB $JS.ACK.KEY_REVOKE_REQUESTS.revoker.1.17.5.1700000000.3 4\r\n+WPI\r\n" +
		"PUB $JS.ACK.KEY_REVOKE_REQUESTS.revoker.2.18.6.1700000000.2 _INBOX.worker.y 4\r\n+ACK\r\n"
	scanDeliveries([]byte(client), target, t0.Add(time.Second), true)
	if held := d.heldAt(2, t0.Add(2*time.Second)); !slices.Equal(held, []uint64{17}) {
		t.Fatalf("held after +WPI of 17 and +ACK of 18: %v, want [17]", held)
	}
	if held := d.heldAt(1, t0.Add(2*time.Second)); len(held) != 0 {
		t.Fatalf("replica 1 holds %v, want nothing", held)
	}
}
