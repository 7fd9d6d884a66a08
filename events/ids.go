package events

import (
	"fmt"
	"strconv"
	"strings"
)

// FallbackID is the id of a request that names none: "<stream>-<seq>", the
// stream and sequence of the message that carries it. The form is reserved
// (see reservedID), so only that message can ever hold this id.
func FallbackID(stream string, seq uint64) string {
	return stream + "-" + strconv.FormatUint(seq, 10)
}

// fallbackPrefix returns "<stream>-" when fallbackID has the form
// "<stream>-<digits>", and "" otherwise.
func fallbackPrefix(fallbackID string) string {
	i := strings.LastIndexByte(fallbackID, '-')
	if i <= 0 || !allDigits(fallbackID[i+1:]) {
		return ""
	}
	return fallbackID[:i+1]
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// reservedID returns a problem when v, an id the request names itself, has
// the form of a fallback id of the stream whose prefix ("<stream>-") is
// given: "<stream>-" followed by decimal digits only. Every PubAck tells a
// publisher its message's sequence, so without this rule one could claim the
// next id-less request's id in advance and have that request refused as a
// conflict. Only the form of the stream the request arrived on is reserved:
// "inc-4711" stays a valid id, and results stored under earlier fallback ids
// keep their ids.
func reservedID(name, v, prefix string) string {
	if prefix == "" || !strings.HasPrefix(v, prefix) || !allDigits(v[len(prefix):]) {
		return ""
	}
	return fmt.Sprintf("%s %s has the form %q, which revoker reserves for requests without an id", name, Quote(v), prefix+"<sequence>")
}
