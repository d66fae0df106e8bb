package main

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestTuneGC: serve's collector defaults apply only where the environment
// has no setting of its own.
func TestTuneGC(t *testing.T) {
	percent := debug.SetGCPercent(100)
	limit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	})

	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	current := func() (int, int64) {
		p := debug.SetGCPercent(-1)
		debug.SetGCPercent(p)
		return p, debug.SetMemoryLimit(-1) // a negative limit only reads it
	}

	tuneGC(getenv)
	if p, l := current(); p != defaultGCPercent || l != defaultMemoryLimit {
		t.Fatalf("no environment: GOGC %d, limit %d; want %d, %d", p, l, defaultGCPercent, defaultMemoryLimit)
	}

	debug.SetGCPercent(150)
	debug.SetMemoryLimit(1 << 30)
	env["GOGC"], env["GOMEMLIMIT"] = "150", "1GiB"
	tuneGC(getenv)
	if p, l := current(); p != 150 || l != 1<<30 {
		t.Fatalf("environment set: GOGC %d, limit %d; want the environment's 150, %d", p, l, 1<<30)
	}
}
