package authn

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/audit/audittest"
	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/internal/ratelimit"
)

// TestSigninFailureAuditedAfterHangUp: a refused sign-in attempt is
// recorded even when its client closed the connection before the answer,
// and a request that ended only because its client left (499) records no
// failure.
func TestSigninFailureAuditedAfterHangUp(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   bool
	}{
		{http.StatusUnauthorized, true},
		{http.StatusInternalServerError, true},
		{apierror.StatusClientClosed, false},
		{http.StatusOK, false},
	} {
		rec := &audittest.Recorder{Live: true}
		s := &Service{audit: rec, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		ctx, cancel := context.WithCancel(context.Background())
		r := httptest.NewRequest(http.MethodPost, "/webauthn/login/finish", nil).WithContext(ctx)
		cancel() // the client hung up
		w := s.auditSigninFailures(httptest.NewRecorder(), r)
		w.WriteHeader(tc.status)
		if got := len(rec.Events()) == 1; got != tc.want {
			t.Errorf("status %d: recorded %v, want %v", tc.status, rec.Events(), tc.want)
			continue
		}
		if tc.want {
			if e := rec.Events()[0]; e.Type != audit.SigninFailure || e.Detail["status"] != tc.status {
				t.Errorf("status %d: recorded %+v", tc.status, e)
			}
		}
	}
}

// liveRates is a rate-limit store that refuses work under a cancelled
// context, as the PostgreSQL store's driver does. Its windows never end:
// the test's clock stands still. (authn's tests cannot import
// store/memory, which imports authn.)
type liveRates struct{ m map[string]ratelimit.State }

func (l *liveRates) RateIncr(ctx context.Context, key string, now time.Time, _ time.Duration) (ratelimit.State, error) {
	if err := ctx.Err(); err != nil {
		return ratelimit.State{}, err
	}
	st := l.m[key]
	if st.Start.IsZero() {
		st.Start = now
	}
	st.Count++
	st.Last = now
	l.m[key] = st
	return st, nil
}

func (l *liveRates) RateGet(ctx context.Context, key string) (ratelimit.State, error) {
	return l.m[key], ctx.Err()
}

func (l *liveRates) RateLock(ctx context.Context, key string, until, now time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	st := l.m[key]
	st.LockedUntil, st.Last = until, now
	l.m[key] = st
	return nil
}

func (l *liveRates) RateReset(ctx context.Context, key string) error {
	delete(l.m, key)
	return ctx.Err()
}

func (l *liveRates) RatePurge(context.Context, time.Time) (int64, error) { return 0, nil }

// TestFailedSigninCountedAfterHangUp: a person's failed sign-in counts
// towards their lockout, and the lockout is recorded, even when the client
// hung up before the answer.
func TestFailedSigninCountedAfterHangUp(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	cfg := ratelimit.Config{PersonFailures: ratelimit.Failures{DelayAfter: 2, BaseDelay: time.Millisecond, LockAfter: 2, Lockout: time.Hour, Window: time.Hour}}
	lim, err := ratelimit.New(cfg, &liveRates{m: map[string]ratelimit.State{}}, func() time.Time { return now }, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &audittest.Recorder{Live: true}
	s := &Service{limiter: lim, audit: rec, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	gone, hangUp := context.WithCancel(context.Background())
	hangUp()
	s.personFailed(gone, "555000000001")
	s.personFailed(gone, "555000000001")
	d, err := lim.Check(context.Background(), ratelimit.PersonKey("555000000001"))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Locked {
		t.Errorf("after two failed sign-ins whose clients hung up: %+v, want locked", d)
	}
	if len(rec.Events()) != 1 || rec.Events()[0].Type != audit.Lockout {
		t.Errorf("recorded %+v, want one lockout", rec.Events())
	}
}
