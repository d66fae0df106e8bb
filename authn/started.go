package authn

import (
	"crypto/subtle"
	"sync"
	"time"
)

// startedFlows keeps what the first login begin of each flow this process
// started needs, so that the begin answers without reading the flow: one
// round trip and one SELECT fewer per sign-in when the browser's begin
// reaches the replica that started its flow (docs/performance.md, round
// 13). The first begin that asks for a flow takes its entry, whatever the
// answer. A begin that finds none, finds another browser's, or finds it
// past the challenge's young window (madeLoginOptions) reads the flow as
// before. The begin only hands out options; the finish checks everything
// against the stored flow, so an entry never lets through a sign-in that
// the store would refuse.
type startedFlows struct {
	mu        sync.Mutex
	entries   map[string]startedFlow
	lastSweep time.Time
}

type startedFlow struct {
	bindingHash []byte
	youngUntil  time.Time // the last instant the begin may hand the options out
	options     []byte
}

// maxStartedFlows bounds startedFlows (an entry is a few hundred bytes).
const maxStartedFlows = 4096

// put keeps f for flow id. When full, it drops the entries past their
// window (at most once a second) and, if still full, keeps nothing.
func (c *startedFlows) put(id string, f startedFlow, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]startedFlow)
	}
	if len(c.entries) >= maxStartedFlows {
		if now.Sub(c.lastSweep) < time.Second {
			return
		}
		c.lastSweep = now
		for k, e := range c.entries {
			if now.After(e.youngUntil) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= maxStartedFlows {
			return
		}
	}
	c.entries[id] = f
}

// take removes flow id's entry and returns its options if it is bound to
// bindingHash and still young at now; nil otherwise.
func (c *startedFlows) take(id string, bindingHash []byte, now time.Time) []byte {
	c.mu.Lock()
	e, ok := c.entries[id]
	if ok {
		delete(c.entries, id)
	}
	c.mu.Unlock()
	if !ok || now.After(e.youngUntil) || subtle.ConstantTimeCompare(bindingHash, e.bindingHash) != 1 {
		return nil
	}
	return e.options
}
