package authn

import (
	"fmt"
	"testing"
	"time"
)

// TestStartedFlowsBounded: the kept flows never pass maxStartedFlows;
// when full, those past their window make room (at most one sweep a
// second), and young ones are never dropped for new ones.
func TestStartedFlowsBounded(t *testing.T) {
	var c startedFlows
	t0 := time.Unix(1_800_000_000, 0)
	bind := []byte("binding-hash")
	for i := range maxStartedFlows {
		c.put(fmt.Sprint("old-", i), startedFlow{bindingHash: bind, youngUntil: t0.Add(time.Minute), options: []byte("o")}, t0)
	}
	c.put("new", startedFlow{bindingHash: bind, youngUntil: t0.Add(2 * time.Minute), options: []byte("n")}, t0.Add(time.Second))
	if len(c.entries) != maxStartedFlows || c.take("new", bind, t0) != nil {
		t.Fatalf("full of young flows: %d kept, the new one among them", len(c.entries))
	}
	if c.take("old-7", bind, t0) == nil {
		t.Fatal("a young flow was dropped")
	}
	c.put("old-7", startedFlow{bindingHash: bind, youngUntil: t0.Add(time.Minute), options: []byte("o")}, t0)
	later := t0.Add(time.Minute + time.Second)
	c.put("new", startedFlow{bindingHash: bind, youngUntil: later.Add(time.Minute), options: []byte("n")}, later)
	if len(c.entries) != 1 || string(c.take("new", bind, later)) != "n" {
		t.Fatalf("after the window: %d kept, want only the new one", len(c.entries))
	}
}
