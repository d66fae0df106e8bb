package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nhsid/nhsid/internal/ratelimit"
)

// RunRateLimitTests checks ratelimit.Store: windows, restart keeping a
// lock, reset, purge, atomic concurrent increments, and the Limiter's
// progressive delay and lockout on top of the store with an injected
// clock. newStore must return an empty store.
func RunRateLimitTests(t *testing.T, newStore func(t *testing.T) ratelimit.Store) {
	ctx := context.Background()
	tests := []suiteTest2{
		{"absent key is zero", func(t *testing.T, s ratelimit.Store) {
			st, err := s.RateGet(ctx, "nobody")
			noErr(t, "get", err)
			equal(t, "state", st, ratelimit.State{})
		}},
		{"window counts then restarts", func(t *testing.T, s ratelimit.Store) {
			for i := 1; i <= 3; i++ {
				st, err := s.RateIncr(ctx, "k", t0.Add(time.Duration(i)*time.Second), time.Minute)
				noErr(t, "incr", err)
				equal(t, "count", st.Count, i)
				equal(t, "start", st.Start, t0.Add(time.Second))
			}
			later := t0.Add(time.Second + time.Minute)
			st, err := s.RateIncr(ctx, "k", later, time.Minute)
			noErr(t, "incr after window", err)
			equal(t, "restarted", st, ratelimit.State{Count: 1, Start: later, Last: later})
			got, err := s.RateGet(ctx, "k")
			noErr(t, "get", err)
			equal(t, "get", got, st)
		}},
		{"lock survives a window restart, reset clears", func(t *testing.T, s ratelimit.Store) {
			until := t0.Add(time.Hour)
			noErr(t, "lock absent key", s.RateLock(ctx, "p", until, t0))
			st, err := s.RateGet(ctx, "p")
			noErr(t, "get", err)
			equal(t, "locked", st.LockedUntil, until)
			st, err = s.RateIncr(ctx, "p", t0.Add(2*time.Hour), time.Minute)
			noErr(t, "incr", err)
			equal(t, "lock kept", st.LockedUntil, until)
			noErr(t, "reset", s.RateReset(ctx, "p"))
			noErr(t, "reset again", s.RateReset(ctx, "p"))
			st, err = s.RateGet(ctx, "p")
			noErr(t, "get", err)
			equal(t, "after reset", st, ratelimit.State{})
		}},
		{"purge removes idle keys only", func(t *testing.T, s ratelimit.Store) {
			_, err := s.RateIncr(ctx, "old", t0, time.Minute)
			noErr(t, "incr", err)
			_, err = s.RateIncr(ctx, "new", t0.Add(time.Hour), time.Minute)
			noErr(t, "incr", err)
			_, err = s.RateIncr(ctx, "old-locked", t0, time.Minute)
			noErr(t, "incr", err)
			noErr(t, "lock", s.RateLock(ctx, "old-locked", t0.Add(3*time.Hour), t0))
			n, err := s.RatePurge(ctx, t0.Add(30*time.Minute))
			noErr(t, "purge", err)
			equal(t, "purged", n, int64(1))
			for _, k := range []string{"new", "old-locked"} {
				st, err := s.RateGet(ctx, k)
				noErr(t, "get", err)
				if st.Count == 0 {
					t.Fatalf("%s was purged", k)
				}
			}
		}},
		{"concurrent increments are atomic", func(t *testing.T, s ratelimit.Store) {
			const n = 40
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := s.RateIncr(ctx, "busy", t0, time.Minute)
					errs <- err
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				noErr(t, "incr", err)
			}
			st, err := s.RateGet(ctx, "busy")
			noErr(t, "get", err)
			equal(t, "count", st.Count, n)
		}},
		{"limiter: progressive delay, lockout, unlock", func(t *testing.T, s ratelimit.Store) {
			now := t0
			clock := func() time.Time { return now }
			l, err := ratelimit.New(ratelimit.Config{PersonFailures: ratelimit.Failures{
				DelayAfter: 2, BaseDelay: time.Second, MaxDelay: 4 * time.Second, LockAfter: 5, Lockout: 10 * time.Minute, Window: time.Hour,
			}}, s, clock, nil)
			noErr(t, "new", err)
			key := ratelimit.PersonKey("555000000001")
			steps := []struct {
				name      string
				advance   time.Duration
				fail      bool
				allowed   bool
				locked    bool
				wantRetry time.Duration
			}{
				{name: "first attempt", allowed: true},
				{name: "failure 1", fail: true, allowed: true},
				{name: "failure 2 starts the delay", fail: true, wantRetry: time.Second},
				{name: "too soon", advance: 500 * time.Millisecond, wantRetry: 500 * time.Millisecond},
				{name: "after the delay", advance: 500 * time.Millisecond, allowed: true},
				{name: "failure 3 doubles", fail: true, wantRetry: 2 * time.Second},
				{name: "failure 4 doubles again", advance: 2 * time.Second, fail: true, wantRetry: 4 * time.Second},
				{name: "failure 5 locks", advance: 4 * time.Second, fail: true, locked: true, wantRetry: 10 * time.Minute},
				{name: "still locked", advance: 9 * time.Minute, locked: true, wantRetry: time.Minute},
			}
			for _, st := range steps {
				now = now.Add(st.advance)
				var d ratelimit.Decision
				if st.fail {
					d, err = l.Fail(ctx, key)
					if d.JustLocked != st.locked {
						t.Fatalf("%s: JustLocked %v", st.name, d.JustLocked)
					}
					d.JustLocked = false
				} else {
					d, err = l.Check(ctx, key)
				}
				noErr(t, st.name, err)
				if d.Allowed != st.allowed || d.Locked != st.locked || d.RetryAfter != st.wantRetry {
					t.Fatalf("%s: got %+v, want allowed=%v locked=%v retry=%v", st.name, d, st.allowed, st.locked, st.wantRetry)
				}
			}
			locked, _, err := l.Locked(ctx, "555000000001")
			noErr(t, "locked", err)
			equal(t, "locked", locked, true)
			noErr(t, "unlock", l.Unlock(ctx, "555000000001"))
			d, err := l.Check(ctx, key)
			noErr(t, "check", err)
			equal(t, "after unlock", d, ratelimit.Decision{Allowed: true})
		}},
		{"limiter: request rate per IP with exemption", func(t *testing.T, s ratelimit.Store) {
			now := t0
			l, err := ratelimit.New(ratelimit.Config{Login: ratelimit.Rate{Limit: 2, Window: time.Minute}, Exempt: []string{"127.0.0.0/8"}},
				s, func() time.Time { return now }, nil)
			noErr(t, "new", err)
			for i, want := range []bool{true, true, false} {
				d, err := l.Allow(ctx, ratelimit.ClassLogin, "192.0.2.7")
				noErr(t, "allow", err)
				if d.Allowed != want {
					t.Fatalf("request %d: allowed=%v, want %v", i+1, d.Allowed, want)
				}
				if !want && d.RetryAfter != time.Minute {
					t.Fatalf("retry after %v, want 1m", d.RetryAfter)
				}
			}
			for i := 0; i < 5; i++ {
				d, err := l.Allow(ctx, ratelimit.ClassLogin, "127.0.0.1")
				noErr(t, "allow exempt", err)
				equal(t, "exempt", d.Allowed, true)
			}
			now = now.Add(time.Minute)
			d, err := l.Allow(ctx, ratelimit.ClassLogin, "192.0.2.7")
			noErr(t, "allow", err)
			equal(t, "next window", d.Allowed, true)
		}},
		{"limiter: IP lockout is rate_limited, not locked", func(t *testing.T, s ratelimit.Store) {
			now := t0
			l, err := ratelimit.New(ratelimit.Config{IPFailures: ratelimit.Failures{DelayAfter: 1, BaseDelay: time.Millisecond, LockAfter: 2, Lockout: time.Minute, Window: time.Hour}},
				s, func() time.Time { return now }, nil)
			noErr(t, "new", err)
			key := ratelimit.IPKey(ratelimit.ClassToken, "192.0.2.9")
			_, err = l.Fail(ctx, key)
			noErr(t, "fail", err)
			d, err := l.Fail(ctx, key)
			noErr(t, "fail", err)
			equal(t, "decision", d, ratelimit.Decision{RetryAfter: time.Minute, JustLocked: true})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newStore(t))
		})
	}
}

type suiteTest2 struct {
	name string
	run  func(t *testing.T, s ratelimit.Store)
}
