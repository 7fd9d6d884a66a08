package natstest

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Poll calls cond every 10 ms until it returns true or timeout passes, and
// reports whether it did. cond is called at least once.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollInterval)
	}
	return true
}

// WaitFor polls cond as Poll does and fails the test if it is not true
// within timeout, with "timed out after <timeout> waiting for <what>".
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// FreeAddr returns a 127.0.0.1:PORT address on a FreePort, for a listener
// the test starts itself (an HTTP server, a process).
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// FreePort returns a loopback port that was free a moment ago, for a server
// a test starts later or restarts on the same port. It is picked below the
// kernel's ephemeral range: a port a listen on :0 gave back is in that
// range, where a listen on :0 or an outgoing connection of a test running
// beside this one can take it before the server binds (CI saw a chaos
// replica's REVOKER_HTTP_ADDR taken so). Below the range only another
// explicit pick can take it, and this process hands out each port once.
func FreePort(t testing.TB) int {
	t.Helper()
	low := ephemeralLow()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 1000 {
		p := lowestPicked + rand.IntN(low-lowestPicked)
		if handedOut.ports[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // in use
		}
		_ = ln.Close()
		handedOut.ports[p] = true
		return p
	}
	t.Fatalf("natstest: no free port between %d and %d", lowestPicked, low)
	return 0
}

// lowestPicked is the bottom of FreePort's range: above the well-known and
// most registered service ports.
const lowestPicked = 10000

var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// ephemeralLow is the first port the kernel hands to a listen on :0 or an
// outgoing connection: Linux's ip_local_port_range, else the lowest of the
// usual defaults. It is read once.
var ephemeralLow = sync.OnceValue(func() int {
	const fallback = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fallback
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return fallback
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low < lowestPicked+1000 {
		return fallback
	}
	return low
})

// ErrStillRunning matches, with errors.Is, the error that a stop from Go
// returns when run has not returned in time; that error's message is late.
var ErrStillRunning = errors.New("natstest: still running after stop")

// stillRunning is ErrStillRunning with the caller's message.
type stillRunning string

func (e stillRunning) Error() string        { return string(e) }
func (e stillRunning) Is(target error) bool { return target == ErrStillRunning }

// Go runs run in a goroutine until stop is called or the test ends. stop
// cancels run's context and waits at most within for run to return; it
// reports what run returned or, if run was still running, an error with the
// message late that is ErrStillRunning. Later calls report the same. done is
// closed once run has returned, so a test can notice that it ended early
// (then stop does not wait).
//
//	stop, _ := natstest.Go(t, 30*time.Second, "Run did not return within 30s of cancellation", w.Run)
//	...
//	if err := stop(); err != nil { t.Fatal(err) }
func Go(t testing.TB, within time.Duration, late string, run func(ctx context.Context) error) (stop func() error, done <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan struct{})
	var runErr error
	go func() {
		defer close(ended)
		runErr = run(ctx)
	}()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case <-ended:
				err = runErr
			case <-time.After(within):
				err = stillRunning(late)
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop, ended
}
