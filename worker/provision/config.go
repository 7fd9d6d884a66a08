package provision

import "time"

// Config is what provisioning needs to know of a deployment: the names of
// its streams, subjects and consumer, and the worker settings the
// streams' limits follow. It has no defaults of its own: every field is
// used as set (worker.Config.Provisioning fills it from a worker's
// configuration, defaults applied).
type Config struct {
	RequestsSubject string
	ResultsSubject  string // prefix; a result's outcome is appended
	RequestsStream  string
	ResultsStream   string
	Consumer        string // the durable shared by every replica
	Replicas        int    // copies of each stream's and bucket's data

	MaxSchedule   time.Duration // how far ahead a request may be scheduled: the requests stream keeps it that much longer
	MaxRetry      time.Duration // a request's retry budget: the results duplicates window outlasts it
	AckWait       time.Duration // of the consumer Ensure creates
	MaxDeliveries int           // the delivery at which the worker gives up: the consumer must deliver more often

	// Provision: the worker creates what is missing and upgrades the
	// ledger before it binds (revoker run without --no-provision), so
	// Check lets pass what that upgrade fixes.
	Provision bool
}
