package natstest_test

import (
	"flag"
	"runtime"
	"strconv"
	"testing"

	"github.com/revoker/revoker/worker/natstest"
)

// Parallel raises -test.parallel unless the command line chose it, and
// never lowers it.
func TestParallel(t *testing.T) {
	f := flag.Lookup("test.parallel")
	before := f.Value.String()
	t.Cleanup(func() { _ = f.Value.Set(before) })
	chosen := false
	flag.Visit(func(f *flag.Flag) { chosen = chosen || f.Name == "test.parallel" })

	n := runtime.GOMAXPROCS(0) + 3
	want := strconv.Itoa(n)
	if chosen {
		want = before // go test -parallel N wins
	}
	natstest.Parallel(n)
	if got := f.Value.String(); got != want {
		t.Errorf("after Parallel(%d): -test.parallel %s, want %s", n, got, want)
	}
	natstest.Parallel(1)
	if got := f.Value.String(); got != want {
		t.Errorf("after Parallel(1): -test.parallel %s, want %s (never lowered)", got, want)
	}
}
