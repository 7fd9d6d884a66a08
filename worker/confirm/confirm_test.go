package confirm

import (
	"strconv"
	"testing"
	"time"
)

// A key found alive is checked again less often each time, twice as long
// after each check up to maxRecheck; a dead one is forgotten; one with no
// answer is checked again after the retry; and no more than maxUnconfirmed
// keys wait.
func TestRecheckBacksOff(t *testing.T) {
	const retry = time.Second
	c := New(Config{Delay: time.Second})
	if !c.Add(Revoked{ID: "k"}) || !c.Add(Revoked{ID: "dead"}) {
		t.Fatal("a key was refused")
	}
	// settle sets k's next check in d from when it is called: it must fall
	// between d after before and d after the call returned.
	settle := func(alive bool, d time.Duration) {
		t.Helper()
		before := time.Now()
		c.settle("k", false, alive, retry)
		after := time.Now()
		if due := c.dueAt(after.Add(time.Hour))["k"].due; due.Before(before.Add(d)) || due.After(after.Add(d)) {
			t.Fatalf("next check %v after the settle, want %v", due.Sub(before), d)
		}
	}
	for _, want := range []time.Duration{retry, 2 * retry, 4 * retry, 8 * retry, 16 * retry, maxRecheck, maxRecheck} {
		settle(true, want) // found alive
	}
	if c.stillAlive() != 1 {
		t.Errorf("stillAlive = %d, want 1", c.stillAlive())
	}
	settle(false, retry) // no answer
	c.settle("dead", true, false, retry)
	if _, ok := c.dueAt(time.Now().Add(time.Hour))["dead"]; ok {
		t.Error("a key found dead is still checked")
	}

	for i := len(c.pending); i < maxUnconfirmed; i++ {
		c.pending["filler-"+strconv.Itoa(i)] = &unconfirmed{}
	}
	if c.Add(Revoked{ID: "one too many"}) {
		t.Errorf("%d keys wait: another was taken", maxUnconfirmed)
	}
	if !c.Add(Revoked{ID: "k"}) {
		t.Error("a key already waiting was refused")
	}
}
