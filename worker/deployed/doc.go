// Package deployed holds benchmarks of revoker as it is deployed: the built
// `revoker run` binary, a separate nats-server process and the Kalshi
// emulator in a process of its own, on loopback. It has no code of its own;
// see deployed_test.go. Run
//
//	go test -run '^$' -bench Deployed -benchtime 1x -timeout 10m ./worker/deployed/
package deployed
