// Package budget owns the account's Kalshi rate budget, which every call
// signed with the credential spends, and its sharing between processes.
//
// A [Limiter] spends the budget in one process: Begin/Wait give each call its
// turn, Throttle halves the rate after a 429 and Pause holds every call for a
// Retry-After ([HeedAnswer] reads a Kalshi answer into them). [Share] splits
// the budget between the replicas of one deployment through the replica plan
// in the KV bucket [ReplicasBucket]. [JoinFleet] carries a pause or a
// halving seen by one replica to every other one on [PauseSubject].
//
// Package worker imports this package, never the reverse.
package budget
