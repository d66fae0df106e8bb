package ratelimit_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nhsid/nhsid/internal/ratelimit"
	"github.com/nhsid/nhsid/store/memory"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		method, path, want string
	}{
		{"POST", "/webauthn/login/begin", ratelimit.ClassLogin},
		{"POST", "/webauthn/login/finish", ratelimit.ClassLogin},
		{"POST", "/webauthn/register/finish", ratelimit.ClassEnrol},
		{"GET", "/enrol", ratelimit.ClassEnrol},
		{"POST", "/oauth2/token", ratelimit.ClassToken},
		{"POST", "/oauth2/introspect", ratelimit.ClassToken},
		{"GET", "/admin/v1/people", ratelimit.ClassAdmin},
		{"GET", "/login", ""},
		{"GET", "/jwks.json", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			if got := ratelimit.Classify(httptest.NewRequest(tt.method, tt.path, nil)); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestMiddleware drives the middleware with an injected clock: request
// rates per IP, failures per IP and per client at the token endpoint, the
// exemption list and Retry-After.
func TestMiddleware(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	newHandler := func(t *testing.T, cfg ratelimit.Config, status int) http.Handler {
		l, err := ratelimit.New(cfg, memory.New(), clock, nil)
		if err != nil {
			t.Fatal(err)
		}
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) })
		return l.Middleware(func(r *http.Request) string {
			h, _, _ := strings.Cut(r.RemoteAddr, ":")
			return h
		}, next)
	}
	do := func(h http.Handler, ip, path string, form url.Values) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.RemoteAddr = ip + ":1234"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	errCode := func(rec *httptest.ResponseRecorder) string {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
		return e.Error
	}
	t.Run("rate per IP", func(t *testing.T) {
		h := newHandler(t, ratelimit.Config{Token: ratelimit.Rate{Limit: 2, Window: time.Minute}}, 200)
		for i, want := range []int{200, 200, 429} {
			rec := do(h, "192.0.2.1", "/oauth2/token", nil)
			if rec.Code != want {
				t.Fatalf("request %d: %d, want %d", i+1, rec.Code, want)
			}
			if want == 429 && (rec.Header().Get("Retry-After") != "60" || errCode(rec) != "rate_limited") {
				t.Fatalf("refusal: Retry-After %q error %q", rec.Header().Get("Retry-After"), errCode(rec))
			}
		}
		if rec := do(h, "192.0.2.2", "/oauth2/token", nil); rec.Code != 200 {
			t.Fatalf("another IP: %d", rec.Code)
		}
		if rec := do(h, "192.0.2.1", "/oauth2/par-not-limited", nil); rec.Code != 200 {
			t.Fatalf("unlimited path: %d", rec.Code)
		}
	})
	t.Run("exempt CIDR", func(t *testing.T) {
		h := newHandler(t, ratelimit.Config{Token: ratelimit.Rate{Limit: 1, Window: time.Minute}, Exempt: []string{"127.0.0.0/8"}}, 200)
		for i := 0; i < 5; i++ {
			if rec := do(h, "127.0.0.1", "/oauth2/token", nil); rec.Code != 200 {
				t.Fatalf("exempt request %d: %d", i+1, rec.Code)
			}
		}
	})
	t.Run("client failures lock the client, not the person", func(t *testing.T) {
		h := newHandler(t, ratelimit.Config{PersonFailures: ratelimit.Failures{DelayAfter: 2, BaseDelay: time.Millisecond, LockAfter: 2, Lockout: time.Hour, Window: time.Hour}}, 401)
		form := url.Values{"client_id": {"c1"}, "grant_type": {"client_credentials"}}
		for i := 0; i < 2; i++ {
			if rec := do(h, "192.0.2.3", "/oauth2/token", form); rec.Code != 401 {
				t.Fatalf("failure %d: %d", i+1, rec.Code)
			}
		}
		rec := do(h, "192.0.2.4", "/oauth2/token", form)
		if rec.Code != http.StatusForbidden || errCode(rec) != "locked" || rec.Header().Get("Retry-After") != "3600" {
			t.Fatalf("locked client from another IP: %d %q %q", rec.Code, errCode(rec), rec.Header().Get("Retry-After"))
		}
		other := url.Values{"client_id": {"c2"}, "grant_type": {"client_credentials"}}
		if rec := do(h, "192.0.2.4", "/oauth2/token", other); rec.Code != 401 {
			t.Fatalf("another client: %d", rec.Code)
		}
	})
	t.Run("IP failures slow the IP down", func(t *testing.T) {
		h := newHandler(t, ratelimit.Config{IPFailures: ratelimit.Failures{DelayAfter: 2, BaseDelay: 4 * time.Second, MaxDelay: 4 * time.Second, LockAfter: 50, Lockout: time.Hour, Window: time.Hour}}, 400)
		for i := 0; i < 2; i++ {
			do(h, "192.0.2.5", "/webauthn/login/finish", nil)
		}
		rec := do(h, "192.0.2.5", "/webauthn/login/finish", nil)
		if rec.Code != 429 || errCode(rec) != "rate_limited" || rec.Header().Get("Retry-After") != "4" {
			t.Fatalf("third attempt: %d %q %q", rec.Code, errCode(rec), rec.Header().Get("Retry-After"))
		}
		now = now.Add(4 * time.Second)
		if rec := do(h, "192.0.2.5", "/webauthn/login/finish", nil); rec.Code != 400 {
			t.Fatalf("after the delay: %d", rec.Code)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		h := newHandler(t, ratelimit.Config{Disabled: true, Token: ratelimit.Rate{Limit: 1, Window: time.Minute}}, 200)
		for i := 0; i < 3; i++ {
			if rec := do(h, "192.0.2.6", "/oauth2/token", nil); rec.Code != 200 {
				t.Fatalf("request %d: %d", i+1, rec.Code)
			}
		}
	})
}

// liveRateStore refuses writes under a cancelled context, as the
// PostgreSQL store's driver does.
type liveRateStore struct{ *memory.Store }

func (s liveRateStore) RateIncr(ctx context.Context, key string, now time.Time, window time.Duration) (ratelimit.State, error) {
	if err := ctx.Err(); err != nil {
		return ratelimit.State{}, err
	}
	return s.Store.RateIncr(ctx, key, now, window)
}

func (s liveRateStore) RateLock(ctx context.Context, key string, until, now time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.Store.RateLock(ctx, key, until, now)
}

// TestFailuresCountedAfterHangUp: a failed client authentication counts
// towards the client's lockout even when the client hangs up before the
// answer; otherwise guessing secrets and hanging up would never lock.
func TestFailuresCountedAfterHangUp(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	cfg := ratelimit.Config{PersonFailures: ratelimit.Failures{DelayAfter: 2, BaseDelay: time.Millisecond, LockAfter: 2, Lockout: time.Hour, Window: time.Hour}}
	l, err := ratelimit.New(cfg, liveRateStore{memory.New()}, func() time.Time { return now }, nil)
	if err != nil {
		t.Fatal(err)
	}
	var hangUp func()
	h := l.Middleware(func(r *http.Request) string { return "192.0.2.9" }, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hangUp() // the client leaves while its request is refused
		w.WriteHeader(http.StatusUnauthorized)
	}))
	form := url.Values{"client_id": {"c1"}, "grant_type": {"client_credentials"}}
	for i := 0; i < 2; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		hangUp = cancel
		req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(form.Encode())).WithContext(ctx)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	d, err := l.Check(context.Background(), ratelimit.ClientKey("c1"))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Locked {
		t.Fatalf("after two failed attempts that hung up: %+v, want the client locked", d)
	}
}
