package provision

import (
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
)

// Rejections of messages whose id is not trusted (undecodable, invalid,
// unverified, or claiming an id that names another key) are kept apart from
// the audit log: anyone who may publish a request can make them, as fast as
// the worker reads, and in the results stream they would push trusted
// results out (oldest first). Their own stream is small and short-lived;
// when it is full the oldest rejections go, and nothing else.
const (
	// UntrustedStream is the stream of untrusted rejections.
	UntrustedStream = "KEY_REVOKE_UNTRUSTED"
	// UntrustedSubject is the prefix of their subjects; the error code is
	// appended: keys.revoke.untrusted.invalid_request.
	UntrustedSubject = "keys.revoke.untrusted"

	untrustedMaxAge   = 7 * 24 * time.Hour
	untrustedMaxBytes = 256 << 20
	// untrustedDupWin drops the second store of one message's rejection
	// (a redelivery after a lost terminate). No longer than the requests
	// stream's window: the server's memory for message ids stays what junk
	// already costs it there.
	untrustedDupWin = requestsDupWin
)

// UntrustedStreamConfig is the stream of untrusted rejections as Ensure
// creates it. Only its replicas depend on c: its name and subjects are
// fixed.
func UntrustedStreamConfig(c Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        UntrustedStream,
		Description: "revoker: rejections of untrusted requests",
		Subjects:    []string{UntrustedSubject + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		MaxAge:      untrustedMaxAge,
		MaxBytes:    untrustedMaxBytes,
		MaxMsgSize:  resultMaxMsgLen,
		AllowDirect: true, // read like the audit log, without a consumer
		Discard:     jetstream.DiscardOld,
		Duplicates:  untrustedDupWin,
	}
}

// UntrustedResultSubject is the subject a rejection with code is stored on.
func UntrustedResultSubject(code events.Code) string {
	return UntrustedSubject + "." + string(code)
}

// untrustedCodes are the codes an untrusted rejection can carry.
var untrustedCodes = []events.Code{events.CodeInvalidRequest, events.CodeUnauthorizedRequest, events.CodeConflictingRequestID}

// subjectCovered reports whether a message on subject is captured by one of
// a stream's subject filters (tokens, "*" and a trailing ">").
func subjectCovered(filters []string, subject string) bool {
	for _, f := range filters {
		if subjectMatch(f, subject) {
			return true
		}
	}
	return false
}

func subjectMatch(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, f := range ft {
		switch {
		case f == ">":
			return len(st) > i
		case i >= len(st):
			return false
		case f != "*" && f != st[i]:
			return false
		}
	}
	return len(ft) == len(st)
}
