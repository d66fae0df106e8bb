// Package ratelimit limits request rates and locks out repeated failures,
// per source IP and per person or client, with its state in a Store shared
// by every replica (PostgreSQL in production, memory in dev). It offers:
//
//   - fixed-window request rates per class (login, enrolment, token, admin)
//     and key (an IP address), answered with 429 `rate_limited` and
//     Retry-After;
//   - failure tracking with a progressive delay after a few failures
//     (`rate_limited`, Retry-After) and a lockout after N (`locked`), reset
//     by a success or by an RA unlock;
//   - an exemption list of CIDRs (for loopback load tests).
//
// Middleware applies the per-IP limits to whole routes; authn calls the
// Limiter directly for per-person failures at sign-in.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/nhsid/nhsid/internal/apierror"
)

// State is the shared state of one key.
type State struct {
	// Count is the number of hits in the current window (for a rate key)
	// or of failures since the window began (for a failure key).
	Count int
	// Start is when the current window began; zero when the key is absent.
	Start time.Time
	// Last is the time of the latest hit or failure.
	Last time.Time
	// LockedUntil, when after now, means the key is locked out.
	LockedUntil time.Time
}

// Store keeps State by key. Every method is atomic across replicas.
type Store interface {
	// RateIncr adds one hit to key at now. When the key is absent or its
	// window began at or before now-window, the window restarts (Count 1,
	// Start now); LockedUntil is kept either way. It returns the new state.
	RateIncr(ctx context.Context, key string, now time.Time, window time.Duration) (State, error)
	// RateGet returns the state of key; the zero State when absent.
	RateGet(ctx context.Context, key string) (State, error)
	// RateLock sets LockedUntil of key (creating it if absent).
	RateLock(ctx context.Context, key string, until, now time.Time) error
	// RateReset forgets key (a success, or an unlock).
	RateReset(ctx context.Context, key string) error
	// RatePurge deletes keys whose Last and LockedUntil are both before
	// before, and returns how many went.
	RatePurge(ctx context.Context, before time.Time) (int64, error)
}

// Rate is a request-rate limit: at most Limit requests per Window.
type Rate struct {
	Limit  int           `yaml:"limit"`
	Window time.Duration `yaml:"window"`
}

// Failures is a failure policy: after DelayAfter failures each new attempt
// waits BaseDelay, doubling per failure up to MaxDelay; after LockAfter
// failures the key is locked for Lockout. Failures older than Window are
// forgotten.
type Failures struct {
	DelayAfter int           `yaml:"delay_after"`
	BaseDelay  time.Duration `yaml:"base_delay"`
	MaxDelay   time.Duration `yaml:"max_delay"`
	LockAfter  int           `yaml:"lock_after"`
	Lockout    time.Duration `yaml:"lockout"`
	Window     time.Duration `yaml:"window"`
}

// Config is the rate limit configuration (`rate_limits` in the config file).
type Config struct {
	// Disabled turns every limit off.
	Disabled bool `yaml:"disabled"`
	// Exempt are CIDRs never limited (e.g. 127.0.0.0/8 for load tests).
	Exempt []string `yaml:"exempt"`
	// Request rates per source IP.
	Login Rate `yaml:"login"`
	Enrol Rate `yaml:"enrol"`
	Token Rate `yaml:"token"`
	Admin Rate `yaml:"admin"`
	// PersonFailures applies to failed sign-ins of one person (and failed
	// client authentication of one client at the token endpoint).
	PersonFailures Failures `yaml:"person_failures"`
	// IPFailures applies to failures from one source IP on any limited
	// endpoint.
	IPFailures Failures `yaml:"ip_failures"`
}

// Classes of limited endpoints.
const (
	ClassLogin = "login"
	ClassEnrol = "enrol"
	ClassToken = "token"
	ClassAdmin = "admin"
)

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	rate := func(r *Rate, limit int) {
		if r.Limit == 0 {
			r.Limit = limit
		}
		if r.Window == 0 {
			r.Window = time.Minute
		}
	}
	// Per-IP defaults allow for a hospital's staff behind one NAT address
	// and for busy relying-party back ends at the token endpoint.
	rate(&c.Login, 600)
	rate(&c.Enrol, 120)
	rate(&c.Token, 6000)
	rate(&c.Admin, 600)
	fail := func(f *Failures, d Failures) {
		if f.DelayAfter == 0 {
			f.DelayAfter = d.DelayAfter
		}
		if f.BaseDelay == 0 {
			f.BaseDelay = d.BaseDelay
		}
		if f.MaxDelay == 0 {
			f.MaxDelay = d.MaxDelay
		}
		if f.LockAfter == 0 {
			f.LockAfter = d.LockAfter
		}
		if f.Lockout == 0 {
			f.Lockout = d.Lockout
		}
		if f.Window == 0 {
			f.Window = d.Window
		}
	}
	fail(&c.PersonFailures, Failures{DelayAfter: 3, BaseDelay: time.Second, MaxDelay: 30 * time.Second,
		LockAfter: 10, Lockout: 30 * time.Minute, Window: time.Hour})
	fail(&c.IPFailures, Failures{DelayAfter: 100, BaseDelay: time.Second, MaxDelay: 10 * time.Second,
		LockAfter: 1000, Lockout: 15 * time.Minute, Window: time.Hour})
	return c
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	for _, e := range c.Exempt {
		if _, err := netip.ParsePrefix(e); err != nil {
			errs = append(errs, fmt.Errorf("rate_limits.exempt: %q is not a CIDR", e))
		}
	}
	for name, r := range map[string]Rate{"login": c.Login, "enrol": c.Enrol, "token": c.Token, "admin": c.Admin} {
		if r.Limit < 0 || r.Window < 0 {
			errs = append(errs, fmt.Errorf("rate_limits.%s: limit and window must not be negative", name))
		}
	}
	for name, f := range map[string]Failures{"person_failures": c.PersonFailures, "ip_failures": c.IPFailures} {
		if f.DelayAfter < 0 || f.LockAfter < 0 || f.BaseDelay < 0 || f.MaxDelay < 0 || f.Lockout < 0 || f.Window < 0 {
			errs = append(errs, fmt.Errorf("rate_limits.%s: values must not be negative", name))
		}
		if f.LockAfter > 0 && f.DelayAfter > f.LockAfter {
			errs = append(errs, fmt.Errorf("rate_limits.%s: delay_after exceeds lock_after", name))
		}
	}
	return errors.Join(errs...)
}

// Decision is the outcome of a check.
type Decision struct {
	// Allowed is false when the caller must be refused.
	Allowed bool
	// Locked is true for a lockout (error `locked`), false for a rate or
	// delay (error `rate_limited`).
	Locked bool
	// RetryAfter is how long to wait (rounded up to whole seconds when
	// written as Retry-After).
	RetryAfter time.Duration
	// JustLocked is set by the Fail that started a lockout (for the audit
	// trail).
	JustLocked bool
	// Failures is how many failures the key had on record when Check read
	// it, aged out or not (set by Check only).
	Failures int
}

// Limiter applies a Config to a Store.
type Limiter struct {
	cfg    Config
	store  Store
	now    func() time.Time
	log    *slog.Logger
	exempt []netip.Prefix
}

// New returns a Limiter; cfg gets its defaults. now nil means time.Now.
func New(cfg Config, st Store, now func() time.Time, log *slog.Logger) (*Limiter, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	if st == nil {
		return nil, errors.New("ratelimit: store is required")
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{cfg: cfg, store: st, now: now, log: log}
	for _, e := range cfg.Exempt {
		p, _ := netip.ParsePrefix(e)
		l.exempt = append(l.exempt, p.Masked())
	}
	return l, nil
}

// Config returns the effective configuration.
func (l *Limiter) Config() Config { return l.cfg }

// Exempt reports whether ip is on the exemption list (or limits are off).
func (l *Limiter) Exempt(ip string) bool {
	if l == nil || l.cfg.Disabled {
		return true
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range l.exempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (l *Limiter) rate(class string) Rate {
	switch class {
	case ClassLogin:
		return l.cfg.Login
	case ClassEnrol:
		return l.cfg.Enrol
	case ClassToken:
		return l.cfg.Token
	case ClassAdmin:
		return l.cfg.Admin
	}
	return Rate{}
}

// Allow counts one request of class from ip and decides whether it may go
// ahead.
func (l *Limiter) Allow(ctx context.Context, class, ip string) (Decision, error) {
	r := l.rate(class)
	if l.Exempt(ip) || r.Limit <= 0 {
		return Decision{Allowed: true}, nil
	}
	now := l.now()
	st, err := l.store.RateIncr(ctx, "rate:"+class+":"+ip, now, r.Window)
	if err != nil {
		return Decision{}, fmt.Errorf("rate limit: %w", err)
	}
	if st.Count > r.Limit {
		return Decision{RetryAfter: st.Start.Add(r.Window).Sub(now)}, nil
	}
	return Decision{Allowed: true}, nil
}

// PersonKey and IPKey name failure keys.
func PersonKey(uid string) string { return "fail:person:" + uid }

// IPKey is the failure key of a source IP for class.
func IPKey(class, ip string) string { return "fail:ip:" + class + ":" + ip }

// ClientKey is the failure key of an OAuth client at the token endpoint.
func ClientKey(clientID string) string { return "fail:client:" + clientID }

func isIPKey(key string) bool { return strings.HasPrefix(key, "fail:ip:") }

func (l *Limiter) policyFor(key string) Failures {
	if isIPKey(key) {
		return l.cfg.IPFailures
	}
	return l.cfg.PersonFailures
}

// delay is the wait required after n failures under f.
func delay(f Failures, n int) time.Duration {
	if f.DelayAfter <= 0 || n < f.DelayAfter || f.BaseDelay <= 0 {
		return 0
	}
	exp := n - f.DelayAfter
	if exp > 30 {
		exp = 30
	}
	d := time.Duration(float64(f.BaseDelay) * math.Pow(2, float64(exp)))
	if f.MaxDelay > 0 && d > f.MaxDelay {
		d = f.MaxDelay
	}
	return d
}

// Check decides whether an attempt for a failure key may go ahead, without
// counting it.
func (l *Limiter) Check(ctx context.Context, key string) (Decision, error) {
	if l == nil || l.cfg.Disabled {
		return Decision{Allowed: true}, nil
	}
	st, err := l.store.RateGet(ctx, key)
	if err != nil {
		return Decision{}, fmt.Errorf("lockout check: %w", err)
	}
	d := l.decide(key, st)
	d.Failures = st.Count
	return d, nil
}

func (l *Limiter) decide(key string, st State) Decision {
	now := l.now()
	if st.LockedUntil.After(now) {
		// A person or client is locked; an IP is only slowed down, so
		// that people behind one NAT are not told their account is locked.
		return Decision{Locked: !isIPKey(key), RetryAfter: st.LockedUntil.Sub(now)}
	}
	f := l.policyFor(key)
	if f.Window > 0 && !st.Start.IsZero() && !st.Start.After(now.Add(-f.Window)) {
		return Decision{Allowed: true} // the failures have aged out
	}
	if d := delay(f, st.Count); d > 0 {
		if until := st.Last.Add(d); until.After(now) {
			return Decision{RetryAfter: until.Sub(now)}
		}
	}
	return Decision{Allowed: true}
}

// Fail records a failure for key; after LockAfter failures the key is
// locked. It returns the decision for the next attempt.
func (l *Limiter) Fail(ctx context.Context, key string) (Decision, error) {
	if l == nil || l.cfg.Disabled {
		return Decision{Allowed: true}, nil
	}
	f := l.policyFor(key)
	now := l.now()
	st, err := l.store.RateIncr(ctx, key, now, f.Window)
	if err != nil {
		return Decision{}, fmt.Errorf("record failure: %w", err)
	}
	if f.LockAfter > 0 && st.Count >= f.LockAfter && !st.LockedUntil.After(now) && f.Lockout > 0 {
		st.LockedUntil = now.Add(f.Lockout)
		if err := l.store.RateLock(ctx, key, st.LockedUntil, now); err != nil {
			return Decision{}, fmt.Errorf("lock out: %w", err)
		}
		l.log.WarnContext(ctx, "locked out after repeated failures", "key", key, "failures", st.Count, "until", st.LockedUntil)
		d := l.decide(key, st)
		d.JustLocked = true
		return d, nil
	}
	return l.decide(key, st), nil
}

// Succeed forgets the failures of key (a successful sign-in).
func (l *Limiter) Succeed(ctx context.Context, key string) error {
	if l == nil || l.cfg.Disabled {
		return nil
	}
	if err := l.store.RateReset(ctx, key); err != nil {
		return fmt.Errorf("reset failures: %w", err)
	}
	return nil
}

// Unlock ends a person's lockout and forgets their failures (RA unlock).
func (l *Limiter) Unlock(ctx context.Context, personUID string) error {
	if l == nil {
		return nil
	}
	if err := l.store.RateReset(ctx, PersonKey(personUID)); err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	return nil
}

// Locked reports a person's lockout state (for the RA console and the
// admin API): whether locked, and until when.
func (l *Limiter) Locked(ctx context.Context, personUID string) (bool, time.Time, error) {
	if l == nil {
		return false, time.Time{}, nil
	}
	st, err := l.store.RateGet(ctx, PersonKey(personUID))
	if err != nil {
		return false, time.Time{}, fmt.Errorf("lockout state: %w", err)
	}
	return st.LockedUntil.After(l.now()), st.LockedUntil, nil
}

// Purge deletes state idle for longer than every window and lockout.
func (l *Limiter) Purge(ctx context.Context) (int64, error) {
	keep := l.cfg.IPFailures.Window
	for _, d := range []time.Duration{l.cfg.PersonFailures.Window, l.cfg.Login.Window, l.cfg.Enrol.Window, l.cfg.Token.Window, l.cfg.Admin.Window} {
		keep = max(keep, d)
	}
	n, err := l.store.RatePurge(ctx, l.now().Add(-keep))
	if err != nil {
		return 0, fmt.Errorf("purge rate limits: %w", err)
	}
	return n, nil
}

// Error turns a refusal into the API error: 429 `rate_limited` or 403
// `locked`. The caller sets Retry-After with SetRetryAfter.
func Error(d Decision) *apierror.Error {
	if d.Locked {
		return apierror.New(http.StatusForbidden, "locked",
			"Too many failed attempts: this account is locked for now. Try again later, or ask your Registration Authority to unlock it.", errors.New("locked out"))
	}
	return apierror.New(http.StatusTooManyRequests, "rate_limited",
		"Too many attempts. Wait a moment and try again.", errors.New("rate limited"))
}

// SetRetryAfter sets the Retry-After header (whole seconds, at least 1).
func SetRetryAfter(w http.ResponseWriter, d time.Duration) {
	secs := int(math.Ceil(d.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
}

// Refuse writes the refusal for d.
func Refuse(w http.ResponseWriter, r *http.Request, log *slog.Logger, d Decision) {
	SetRetryAfter(w, d.RetryAfter)
	apierror.Write(w, r, log, Error(d))
}
