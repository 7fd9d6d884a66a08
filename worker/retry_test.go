package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/revoker/revoker/events"
	"github.com/revoker/revoker/kalshi"
)

// TestFailureCodeIsOneRule: a delete (classify) and a leaked key's search
// (package leaked, through Config.Failed) read a failed Kalshi call alike, and the outcome is the
// events table's for the code.
func TestFailureCodeIsOneRule(t *testing.T) {
	// A refused credential is checked again: credentialRefused says so.
	var rechecks atomic.Int32
	w := &Worker{cfg: Config{Logger: slog.New(recordFunc(func(r slog.Record) {
		if r.Message == "kalshi refused a delete's credential; checking it again" {
			rechecks.Add(1)
		}
	}))}}
	w.cfg.setDefaults()
	for _, tc := range []struct {
		name string
		err  error
		code events.Code
	}{
		{"401", apiErr(401, 0), events.CodeKalshiUnauthorized},
		{"403", apiErr(403, 0), events.CodeKalshiUnauthorized},
		{"400", apiErr(400, 0), events.CodeKalshiBadRequest},
		{"409", apiErr(409, 0), events.CodeKalshiBadRequest},
		{"invalid key ID", fmt.Errorf("kalshi: %w", kalshi.ErrInvalidKeyID), events.CodeInvalidRequest},
		{"budget", &budgetError{"the retry budget ran out"}, events.CodeRetriesExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := failureCode(tc.err); got != tc.code {
				t.Errorf("failureCode = %q, want %q", got, tc.code)
			}
			if code := w.search().Failed(tc.err); code != tc.code {
				t.Errorf("the search's Failed = %q, want %q", code, tc.code)
			}
			switch rechecked := rechecks.Swap(0) > 0; {
			case rechecked && tc.code != events.CodeKalshiUnauthorized:
				t.Errorf("a %s asked to check the credential again", tc.name)
			case !rechecked && tc.code == events.CodeKalshiUnauthorized:
				t.Errorf("a %s did not ask to check the credential again", tc.name)
			}
			var be *budgetError
			if errors.As(tc.err, &be) {
				return // a delete meets the budget before classify (exhausted)
			}
			o, e := classify(tc.err, httpStatus(tc.err))
			if e == nil || e.Code != tc.code || o != tc.code.Outcome() {
				t.Errorf("classify = %q/%v, want %q/%q", o, e, tc.code.Outcome(), tc.code)
			}
		})
	}
}

// recordFunc is a slog.Handler that hands every record to a function.
type recordFunc func(slog.Record)

func (f recordFunc) Enabled(context.Context, slog.Level) bool      { return true }
func (f recordFunc) Handle(_ context.Context, r slog.Record) error { f(r); return nil }
func (f recordFunc) WithAttrs([]slog.Attr) slog.Handler            { return f }
func (f recordFunc) WithGroup(string) slog.Handler                 { return f }
