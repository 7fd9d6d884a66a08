package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/worker/ledger"
)

// "revoke --at TIME": requests with not_before. The worker keeps each in
// the requests stream until then and lists it in the ledger as scheduled
// (key.<id>.scheduled, which the requester role may read); revoke prints
// it as scheduled once listed, and does not wait for the outcome.

// maxScheduleLimit bounds REVOKER_MAX_SCHEDULE: the ledger forgets a
// schedule after 90 days, and a request must still find its own when due.
const maxScheduleLimit = 60 * 24 * time.Hour

// maxSchedule reads --max-schedule.
func (p *parser) maxSchedule() time.Duration {
	d := p.duration("max-schedule")
	if d > maxScheduleLimit {
		p.problem("%s must be at most %s (60 days), got %s", p.get("max-schedule").label(), shortDuration(maxScheduleLimit), events.Quote(p.get("max-schedule").val))
	}
	return d
}

// at reads --at: an RFC 3339 time, or +DURATION from now.
func (p *parser) at(now time.Time) time.Time {
	s := p.get("at")
	switch {
	case s.val == "":
		return time.Time{}
	case strings.HasPrefix(s.val, "+"):
		d, err := time.ParseDuration(s.val[1:])
		if err != nil || d <= 0 {
			p.problem("%s: %s is not a positive duration after + (examples: +90m, +24h)", s.label(), events.Quote(s.val))
		}
		return now.Add(d).UTC()
	}
	t, err := time.Parse(time.RFC3339, s.val)
	if err != nil {
		p.problem("%s: %s is neither an RFC 3339 time (2026-12-24T17:00:00Z) nor +DURATION (+90m)", s.label(), events.Quote(s.val))
	}
	return t.UTC()
}

// atForm refuses --at where it means nothing: a plan, or a leaked key,
// which is revoked at once (its PEM would wait in the stream meanwhile).
func (p *parser) atForm(cfg Config) {
	if cfg.At.IsZero() {
		return
	}
	for _, conflict := range []struct {
		on   bool
		flag string
		why  string
	}{
		{cfg.DryRun, "--dry-run", "a dry run deletes nothing"},
		{cfg.All, "--all", "--all revokes the keys listed now; give their IDs to schedule them"},
		{cfg.LeakedKeyFile != "", "--leaked-key", "a leaked key is revoked at once"},
	} {
		if conflict.on {
			p.problem("--at and %s do not go together: %s", conflict.flag, conflict.why)
		}
	}
}

// scheduledLine is what revoke --at --json prints of a request the worker
// has scheduled: not a result (that comes at not_before), hence its outcome.
type scheduledLine struct {
	RequestID  string    `json:"request_id"`
	RequestSeq uint64    `json:"request_seq"`
	APIKeyID   string    `json:"api_key_id"`
	Outcome    string    `json:"outcome"` // "scheduled"
	NotBefore  time.Time `json:"not_before"`
}

// printScheduled prints o, which the worker lists as scheduled.
func printScheduled(w io.Writer, cfg Config, o *outcome) {
	s := o.scheduled
	if cfg.JSON {
		b, _ := json.Marshal(scheduledLine{s.RequestID, s.RequestSeq, events.CanonicalAPIKeyID(o.keyID), "scheduled", s.NotBefore.UTC()})
		fmt.Fprintf(w, "%s\n", events.EscapeJSON(b))
		return
	}
	fmt.Fprintf(w, "%s scheduled for %s (request %s; revoker status %[1]s shows it, revoker results --request %[3]s its outcome)\n",
		cell(o.label()), s.NotBefore.UTC().Format(time.RFC3339Nano), cell(o.requestID))
}

// watchSchedules polls the ledger until each of outcomes without a result
// is listed as scheduled under its own request sequence, telling mark of
// each, or until ctx ends. seqs gives the sequence of each published
// outcome; it is read under mu.
func watchSchedules(ctx context.Context, js jetstream.JetStream, mu *sync.Mutex, seqs map[*outcome]uint64, mark func(*outcome, ledger.ScheduledRequest)) {
	kl, err := ledger.Open(ctx, js)
	if err != nil {
		return // the results still come; the outcome stays pending
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		mu.Lock()
		todo := make(map[*outcome]uint64, len(seqs))
		for o, seq := range seqs {
			if o.result == nil && o.scheduled == nil {
				todo[o] = seq
			}
		}
		mu.Unlock()
		if len(todo) == 0 {
			return
		}
		for o, seq := range todo {
			list, err := kl.Scheduled(ctx, o.keyID)
			if err != nil {
				continue
			}
			for _, s := range list {
				if s.RequestID == o.requestID && s.RequestSeq == seq {
					mark(o, s)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// printScheduledFor prints the status lines of a key's scheduled requests:
// when each may act, and whether that time has come (its outcome is then
// in the results, or on its way).
func printScheduledFor(w io.Writer, list []ledger.ScheduledRequest, now time.Time) {
	for _, s := range list {
		state := "waiting in the requests stream"
		if !now.Before(s.NotBefore) {
			state = "due: its outcome is in revoker results"
		}
		fmt.Fprintf(w, "  scheduled     for %s by request %s (sequence %d): %s\n",
			s.NotBefore.UTC().Format(time.RFC3339Nano), cell(s.RequestID), s.RequestSeq, state)
	}
}
