package natstest

import (
	"flag"
	"runtime"
	"strconv"
)

// Parallel lets n parallel tests run at once (go test's -parallel, which
// is GOMAXPROCS unless given), unless the command line chose a number.
// Call it from TestMain before m.Run, in a package whose tests mostly wait
// (timers, polls, NATS, other processes) rather than compute: on a 2-core
// machine two at a time leave it mostly idle.
func Parallel(n int) {
	if !flag.Parsed() {
		flag.Parse()
	}
	chosen := false
	flag.Visit(func(f *flag.Flag) { chosen = chosen || f.Name == "test.parallel" })
	if !chosen && n > runtime.GOMAXPROCS(0) {
		_ = flag.Set("test.parallel", strconv.Itoa(n))
	}
}
