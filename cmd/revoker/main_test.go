package main

import (
	"os"
	"testing"
)

// TestMain lets a test run this test binary as revoker itself: with
// REVOKER_TEST_MAIN=1 in its environment it is main, its arguments
// revoker's, so a test can send the process signals and read its exit
// status without building the binary.
func TestMain(m *testing.M) {
	if os.Getenv("REVOKER_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}
