package natstest_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/revoker/revoker/worker/natstest"
)

func TestPoll(t *testing.T) {
	n := 0
	if !natstest.Poll(time.Second, func() bool { n++; return n == 3 }) {
		t.Fatal("Poll gave up on a condition that came true")
	}
	if natstest.Poll(30*time.Millisecond, func() bool { return false }) {
		t.Fatal("Poll reported a condition that never held")
	}
}

func TestFreeAddr(t *testing.T) {
	addr := natstest.FreeAddr(t)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	ln.Close()
}

// TestFreePortIsOutOfTheKernelsWay: ports come from below the range the
// kernel hands to listens on :0 and outgoing connections, and never twice.
func TestFreePortIsOutOfTheKernelsWay(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Skipf("no ephemeral port range to compare with: %v", err)
	}
	low, err := strconv.Atoi(strings.Fields(string(b))[0])
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for range 200 {
		p := natstest.FreePort(t)
		if p >= low || p < 1024 {
			t.Fatalf("FreePort = %d, want one below the ephemeral range starting at %d", p, low)
		}
		if seen[p] {
			t.Fatalf("FreePort handed out %d twice", p)
		}
		seen[p] = true
	}
}

func TestGo(t *testing.T) {
	want := errors.New("stopped")
	stop, done := natstest.Go(t, time.Second, "late", func(ctx context.Context) error {
		<-ctx.Done()
		return want
	})
	if err := stop(); err != want {
		t.Fatalf("stop = %v, want %v", err, want)
	}
	<-done
	if err := stop(); err != want {
		t.Fatalf("second stop = %v, want %v", err, want)
	}

	block := make(chan struct{})
	defer close(block)
	stop, _ = natstest.Go(t, 10*time.Millisecond, "still going", func(context.Context) error {
		<-block
		return nil
	})
	if err := stop(); !errors.Is(err, natstest.ErrStillRunning) || err.Error() != "still going" {
		t.Fatalf("stop of a run that ignores its context = %v, want ErrStillRunning saying %q", err, "still going")
	}
}
