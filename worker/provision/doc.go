// Package provision owns what revoker keeps in JetStream and how it must be
// set: the requests, results and untrusted streams, the shared durable
// consumer, the ledger and replica plan buckets. It says how `revoker run`
// creates each one ([RequestsStreamConfig] and the other …Config functions,
// which deploy/ holds its files to), creates what is missing ([Ensure],
// [Bind]), upgrades a ledger made before per-entry TTLs ([UpgradeLedger]),
// and refuses settings that break one of the worker's guarantees ([Check]).
//
// It takes its own [Config] of names and sizes; worker.Config.Provisioning
// fills it with the worker's defaults. Package worker imports this package,
// never the reverse.
package provision
