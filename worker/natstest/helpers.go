package natstest

import (
	"context"
	"errors"
	"net"
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

// FreeAddr returns a 127.0.0.1:PORT address whose port was free a moment
// ago, for a listener the test starts itself (an HTTP server, a process).
// Another process could take the port first, which is unlikely enough for
// tests.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("natstest: find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

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
