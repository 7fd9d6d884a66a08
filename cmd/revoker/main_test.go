package main

import (
	"os"
	"testing"

	"github.com/revoker/revoker/worker/natstest"
)

// TestMain lets a test run this test binary as revoker itself: with
// REVOKER_TEST_MAIN=1 in its environment it is main, its arguments
// revoker's, so a test can send the process signals and read its exit
// status without building the binary.
//
// The tests mostly wait (for a worker's 2 s pull to end at shutdown, for
// retries, for NATS to restart) and each has its own NATS, emulator and
// ports, so they run in parallel, 4 at a time (8 starved a sandbox of CPU
// beside two CPU-bound processes under -race). Those that set the process's
// environment or working directory (t.Setenv, t.Chdir) cannot; they run
// first, alone.
func TestMain(m *testing.M) {
	if os.Getenv("REVOKER_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	natstest.Parallel(4)
	os.Exit(m.Run())
}
