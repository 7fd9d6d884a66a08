// Package ledger is the durable record every replica of the worker shares,
// in the JetStream KV bucket [Bucket]: what each trusted request id names
// and how it ended, which request revoked each key, the one request that
// may send a key's DELETE now, which key a leaked private key was found to
// be, the requests that wait for their not_before, and the leaked keys that
// matched none. Every change is a compare-and-set on the revision read
// before it, so two replicas never both believe they own a request.
//
//	req.<base64url(request id)>  a [Request]: what the id names and how it ended
//	key.<canonical key id>       a [KeyRecord]: which request revoked the key
//	key.<id>.scheduled           the [ScheduledRequest]s of a key
//	attempt.<canonical key id>   an [Attempt]: the one request that may send the key's DELETE now
//	leaked.<sha256 hex>          a [Leaked]: the key a leaked private key was found to be
//	leaked.<sha256 hex>.scheduled  the scheduled requests of a leaked key
//	miss.<sha256 hex>            a [Miss]: a leaked key's search that found no key (with a TTL)
//
// The keys, the JSON of every entry and the TTLs are what replicas of every
// version read and write during a rolling upgrade: they do not change.
// Package worker decides; this package only reads and writes.
package ledger
