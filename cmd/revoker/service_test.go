package main

import (
	"net/http"
	"testing"
	"time"
)

// Issue 12, item 8: no phase of a metrics connection is unbounded.
func TestHTTPServerBoundsEveryPhase(t *testing.T) {
	t.Parallel()
	srv := httpServer(http.NotFoundHandler())
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": srv.ReadHeaderTimeout, "ReadTimeout": srv.ReadTimeout,
		"WriteTimeout": srv.WriteTimeout, "IdleTimeout": srv.IdleTimeout,
	} {
		if d <= 0 {
			t.Errorf("%s is not set", name)
		}
	}
}
