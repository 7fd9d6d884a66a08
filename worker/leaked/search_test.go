package leaked

import (
	"errors"
	"fmt"
	"testing"

	"github.com/revoker/revoker/events"
)

// A search stopped by shutdown ends nothing: no error for the request, and
// Stopped to send it back. Any other failure is the worker's reading of it,
// saying what the search was doing.
func TestFailureOfAStoppedSearch(t *testing.T) {
	stopped := errors.New("stopped")
	x := finder{Config{Stopped: stopped, Failed: func(error) events.Code { return events.CodeKalshiBadRequest }}}
	wrapped := fmt.Errorf("%w: released", stopped)
	if e := x.failure("listing", wrapped); e != nil {
		t.Errorf("failure of a stopped search = %v, want nil", e)
	}
	if err := x.stoppedOrNil(wrapped); err != stopped {
		t.Errorf("stoppedOrNil = %v, want Stopped", err)
	}
	e := x.failure("listing", errors.New("400"))
	if e == nil || e.Code != events.CodeKalshiBadRequest || e.Message != "listing: 400" {
		t.Errorf("failure = %+v, want kalshi_bad_request saying what failed", e)
	}
	if err := x.stoppedOrNil(errors.New("400")); err != nil {
		t.Errorf("stoppedOrNil of a failure = %v, want nil", err)
	}
}
