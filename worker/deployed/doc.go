// Package deployed holds benchmarks of revoker as it is deployed: the built
// `revoker run` binary, a separate nats-server process and the Kalshi
// emulator in a process of its own, on loopback. Its code is in the tests
// (deployed_test.go, startup_test.go, drain_test.go) and in internal/floor,
// the minimal worker that BenchmarkDeployedThroughput measures as the
// ceiling of what any implementation of the contract can reach. Run
//
//	go test -run '^$' -bench Deployed -benchtime 1x -timeout 20m ./worker/deployed/
package deployed
