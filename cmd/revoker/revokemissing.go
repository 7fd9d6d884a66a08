package main

import (
	"encoding/json"
	"fmt"
	"io"
)

// missingLine is the --json line of revoke for a request without an
// outcome: "pending" (stored; the worker will still carry it out) or
// "not_sent" (the wait ended before JetStream acknowledged it). With the result documents
// on the other lines, every line of stdout is JSON.
type missingLine struct {
	RequestID            string `json:"request_id"`
	APIKeyID             string `json:"api_key_id"`
	Outcome              string `json:"outcome"`
	RequestSeq           uint64 `json:"request_seq,omitempty"`
	LeakedKeyFingerprint string `json:"leaked_key_fingerprint,omitempty"`
	Detail               string `json:"detail"`
}

// printMissing prints what became of o, which has no outcome: to stdout
// its line (a missingLine with --json) and, with --json, the words on
// stderr. stopped: Ctrl-C or SIGTERM ended the wait, not the --timeout.
func printMissing(o *outcome, cfg Config, stopped bool, stdout, stderr io.Writer) {
	l := missingLine{RequestID: o.requestID, APIKeyID: o.keyID, Outcome: "pending", RequestSeq: o.seq, LeakedKeyFingerprint: o.fingerprint}
	why := fmt.Sprintf("no outcome within %v", cfg.Timeout)
	if stopped {
		why = "interrupted before its outcome came"
	}
	l.Detail = fmt.Sprintf("%s: request %s stays queued and will still be carried out (revoker results --request %s)", why, o.requestID, o.requestID)
	if o.seq == 0 {
		why = fmt.Sprintf("not sent within %v", cfg.Timeout)
		if stopped {
			why = "interrupted while sending"
		}
		l.Outcome = "not_sent"
		l.Detail = fmt.Sprintf("%s request %s: it was most likely not stored; revoker results --request %s tells", why, o.requestID, o.requestID)
	}
	key := cell(o.label())
	if !cfg.JSON {
		fmt.Fprintf(stdout, "%s %s: %s\n", key, l.Outcome, l.Detail)
		return
	}
	_ = json.NewEncoder(jsonWriter{stdout}).Encode(l)
	fmt.Fprintf(stderr, "revoker revoke: %s %s: %s\n", key, l.Outcome, l.Detail)
}
