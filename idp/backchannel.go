package idp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite/token/jwt"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/internal/jobs"
	"github.com/nhsid/nhsid/internal/outbound"
)

// backchannelEvent is the OIDC Back-Channel Logout 1.0 event claim key.
const backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// LogoutConfig tunes back-channel logout delivery. Zero values take the
// defaults in brackets.
type LogoutConfig struct {
	// TokenTTL is the lifetime of a logout_token [2m]; a queued token is
	// re-minted (same jti) when it would expire before an attempt.
	TokenTTL time.Duration
	// RetryWindow is how long an undelivered logout keeps being retried [24h].
	RetryWindow time.Duration
	// InitialBackoff is the wait after the first failure, doubled after each
	// further one [10s], up to MaxBackoff [1h].
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// PollInterval is how often RunLogoutDelivery looks for due deliveries
	// when nothing wakes it [5s].
	PollInterval time.Duration
	// Lease is how long a claimed delivery is hidden from other replicas
	// while one tries it [1m]; it must exceed the outbound timeout.
	Lease time.Duration
	// Batch is how many deliveries one pass claims [50]; Parallel is how
	// many of them are sent at once [8].
	Batch    int
	Parallel int
	// Observe, if set, is told each attempt's outcome: "delivered",
	// "retry" or "given_up" (metrics).
	Observe func(outcome string)
}

func (c LogoutConfig) withDefaults() LogoutConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.TokenTTL, 2*time.Minute)
	def(&c.RetryWindow, 24*time.Hour)
	def(&c.InitialBackoff, 10*time.Second)
	def(&c.MaxBackoff, time.Hour)
	def(&c.PollInterval, 5*time.Second)
	def(&c.Lease, time.Minute)
	if c.Batch <= 0 {
		c.Batch = 50
	}
	if c.Parallel <= 0 {
		c.Parallel = 8
	}
	return c
}

// backoff is the wait after the n-th failed attempt (n ≥ 1).
func (c LogoutConfig) backoff(n int) time.Duration {
	d := c.InitialBackoff
	for i := 1; i < n && d < c.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, c.MaxBackoff)
}

// logoutState is the provider's back-channel machinery.
type logoutState struct {
	cfg  LogoutConfig
	http *http.Client
	wake chan struct{}
	once sync.Once
}

func newLogoutState(cfg LogoutConfig, client *http.Client) *logoutState {
	if client == nil {
		client = outbound.New(outbound.Options{})
	}
	return &logoutState{cfg: cfg.withDefaults(), http: client, wake: make(chan struct{}, 1)}
}

// kick wakes the delivery worker without blocking.
func (l *logoutState) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// SessionEnded implements authn.SessionEndListener: it revokes every token
// issued in the session and queues a back-channel logout for every OIDC
// client of the session that registered a backchannel_logout_uri. It never
// calls an RP itself; RunLogoutDelivery does.
func (p *Provider) SessionEnded(ctx context.Context, s authn.Session, reason string) {
	// The session has ended whatever the caller's request does next.
	ctx = context.WithoutCancel(ctx)
	n, err := p.deps.Store.RevokeBySession(ctx, s.SID)
	if err != nil {
		p.log.ErrorContext(ctx, "logout: revoke session tokens", "err", err)
	} else {
		p.log.InfoContext(ctx, "logout: session tokens revoked", "tokens", n, "reason", reason)
	}
	if n > 0 {
		if err := audit.OrNop(p.deps.Audit).Record(ctx, audit.Event{Type: audit.TokenRevoked, Subject: s.PersonUID,
			SessionHash: audit.HashSession(s.SID), Detail: map[string]any{"by": "logout", "reason": reason, "count": n}}); err != nil {
			p.log.ErrorContext(ctx, "logout: audit revocation", "err", err)
		}
	}
	queued, err := p.queueBackchannel(ctx, s)
	if err != nil {
		p.log.ErrorContext(ctx, "logout: queue back-channel logout", "err", err)
	}
	if queued > 0 {
		p.logout.kick()
	}
}

// queueBackchannel enqueues one delivery per back-channel client of s.
func (p *Provider) queueBackchannel(ctx context.Context, s authn.Session) (int, error) {
	ps, ok := p.deps.Store.(authn.ParticipantStore)
	if !ok {
		return 0, nil
	}
	q, ok := p.deps.Store.(LogoutDeliveryStore)
	if !ok {
		return 0, errors.New("store has no logout delivery queue")
	}
	parts, err := ps.ListSessionParticipants(ctx, s.SID)
	if err != nil {
		return 0, fmt.Errorf("list participants: %w", err)
	}
	now := p.now()
	queued := 0
	var errs []error
	for _, part := range parts {
		if part.Kind != "oidc" {
			continue
		}
		fc, err := p.deps.Store.GetClient(ctx, part.PartyID)
		if err != nil {
			errs = append(errs, fmt.Errorf("client %s: %w", part.PartyID, err))
			continue
		}
		c, ok := fc.(*Client)
		if !ok || c.BackchannelLogoutURI == "" || c.Disabled {
			continue
		}
		d := LogoutDelivery{ID: uuid.NewString(), ClientID: c.ID, URI: c.BackchannelLogoutURI, SID: s.SID,
			Subject: s.PersonUID, JTI: uuid.NewString(), CreatedAt: now, NextAttemptAt: now}
		if d.Token, err = p.logoutToken(ctx, c, d, now); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := q.EnqueueLogoutDelivery(ctx, d); err != nil {
			errs = append(errs, fmt.Errorf("enqueue for %s: %w", c.ID, err))
			continue
		}
		queued++
	}
	return queued, errors.Join(errs...)
}

// logoutToken mints the logout_token of d for c at now (CIS2.md: typ
// logout+jwt; iss, aud, iat, exp, jti, sid, sub, events; no nonce), signed
// like the client's ID tokens.
func (p *Provider) logoutToken(ctx context.Context, c *Client, d LogoutDelivery, now time.Time) (string, error) {
	claims := jwt.MapClaims{
		"iss":    p.cfg.Issuer,
		"aud":    c.ID,
		"iat":    now.Unix(),
		"exp":    now.Add(p.logout.cfg.TokenTTL).Unix(),
		"jti":    d.JTI,
		"sid":    d.SID,
		"events": map[string]any{backchannelEvent: map[string]any{}},
	}
	if d.Subject != "" {
		claims["sub"] = d.Subject
	}
	alg := c.IDTokenSignedResponseAlg
	if alg == "" {
		alg = p.cfg.KeyAlg
	}
	h := &jwt.Headers{Extra: map[string]any{"typ": "logout+jwt", algHeader: alg}}
	tok, _, err := keySigner{p: p}.Generate(ctx, claims, h)
	if err != nil {
		return "", fmt.Errorf("logout token: %w", err)
	}
	return tok, nil
}

// tokenExpiry reads the exp claim of a token we minted (no verification:
// it only decides whether to re-mint).
func tokenExpiry(tok string) time.Time {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}
	}
	var c struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(raw, &c) != nil || c.Exp == 0 {
		return time.Time{}
	}
	return time.Unix(c.Exp, 0)
}

// RunLogoutDelivery sends queued back-channel logouts until ctx ends: at
// once when a session ends on this replica, and every PollInterval for
// retries and for logouts queued by other replicas. Replicas share the
// queue safely (ClaimLogoutDeliveries leases rows with SKIP LOCKED).
func (p *Provider) RunLogoutDelivery(ctx context.Context) {
	jobs.Every(ctx, p.logout.cfg.PollInterval, p.logout.wake,
		func(ctx context.Context) error { _, err := p.DeliverLogouts(ctx); return err },
		func(err error) { p.log.ErrorContext(ctx, "logout delivery", "err", err) })
}

// DeliverLogouts makes one pass over the due deliveries and returns how
// many were delivered. A slow or dead RP costs at most the outbound
// timeout, in parallel with the others.
func (p *Provider) DeliverLogouts(ctx context.Context) (int, error) {
	q, ok := p.deps.Store.(LogoutDeliveryStore)
	if !ok {
		return 0, nil
	}
	cfg := p.logout.cfg
	claim := func(ctx context.Context, n int) ([]LogoutDelivery, error) {
		now := p.now()
		ds, err := q.ClaimLogoutDeliveries(ctx, now, now.Add(cfg.Lease), n)
		if err != nil {
			return nil, fmt.Errorf("claim logout deliveries: %w", err)
		}
		return ds, nil
	}
	return outbound.Drain(ctx, cfg.Batch, cfg.Parallel, claim, func(ctx context.Context, d LogoutDelivery) (bool, error) {
		return p.attemptDelivery(ctx, q, d)
	})
}

// attemptDelivery POSTs d once and records the outcome: delivered, retry
// later with backoff, or failed when the retry window has closed.
func (p *Provider) attemptDelivery(ctx context.Context, q LogoutDeliveryStore, d LogoutDelivery) (bool, error) {
	cfg := p.logout.cfg
	now := p.now()
	token := d.Token
	if exp := tokenExpiry(token); exp.IsZero() || exp.Sub(now) < cfg.TokenTTL/2 {
		// Re-mint (same jti) so the RP sees an unexpired token.
		fc, err := p.deps.Store.GetClient(ctx, d.ClientID)
		c, _ := fc.(*Client)
		if err == nil && c != nil {
			if t, err := p.logoutToken(ctx, c, d, now); err == nil {
				token = t
			}
		}
	}
	status, errMsg := p.postLogoutToken(ctx, d.URI, token)
	ok := status == http.StatusOK || status == http.StatusNoContent
	end := p.now()
	updated, err := q.UpdateLogoutDelivery(ctx, d.ID, func(x *LogoutDelivery) error {
		x.Attempts++
		x.Token = token
		if ok {
			x.DeliveredAt, x.LastError = end, ""
			return nil
		}
		x.LastError = errMsg
		next := end.Add(cfg.backoff(x.Attempts))
		if next.After(x.CreatedAt.Add(cfg.RetryWindow)) {
			x.FailedAt = end
			return nil
		}
		x.NextAttemptAt = next
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("record logout attempt: %w", err)
	}
	if cfg.Observe != nil {
		cfg.Observe(outbound.Outcome(ok, !updated.FailedAt.IsZero()))
	}
	attrs := []any{"client", d.ClientID, "attempt", updated.Attempts, "status", status, "delivered", ok}
	if !ok {
		attrs = append(attrs, "err", errMsg, "gave_up", !updated.FailedAt.IsZero(), "next_attempt_at", updated.NextAttemptAt)
		p.log.WarnContext(ctx, "back-channel logout attempt failed", attrs...)
	} else {
		p.log.InfoContext(ctx, "back-channel logout delivered", attrs...)
	}
	e := audit.Event{Type: audit.Logout, Subject: d.Subject, Client: d.ClientID, SessionHash: audit.HashSession(d.SID),
		Detail: map[string]any{"kind": "backchannel", "attempt": updated.Attempts, "status": status}}
	if !ok {
		e.Outcome = audit.Failure
		e.Detail["error"] = truncate(errMsg, 200)
		e.Detail["gave_up"] = !updated.FailedAt.IsZero()
	}
	if err := audit.OrNop(p.deps.Audit).Record(ctx, e); err != nil {
		p.log.ErrorContext(ctx, "audit back-channel logout attempt", "err", err)
	}
	return ok, nil
}

// postLogoutToken sends one back-channel logout request; it returns the
// status (0 when none came back) and a short error for the log.
func (p *Provider) postLogoutToken(ctx context.Context, uri, token string) (int, string) {
	body := url.Values{"logout_token": {token}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, uri, strings.NewReader(body))
	if err != nil {
		return 0, "bad uri: " + err.Error()
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Cache-Control", "no-store")
	status, resp, err := outbound.Do(ctx, p.logout.http, req, 512)
	if err != nil {
		return 0, err.Error()
	}
	if status == http.StatusOK || status == http.StatusNoContent {
		return status, ""
	}
	return status, "status " + strconv.Itoa(status) + ": " + truncate(string(resp), 200)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// recordParticipant notes that client got a code in session sid, so that
// it is told when the session ends.
func (p *Provider) recordParticipant(ctx context.Context, sid, clientID string) error {
	ps, ok := p.deps.Store.(authn.ParticipantStore)
	if !ok || sid == "" {
		return nil
	}
	if err := ps.AddSessionParticipant(ctx, authn.SessionParticipant{SID: sid, Kind: "oidc", PartyID: clientID, FirstAt: p.now()}); err != nil {
		return fmt.Errorf("record participant: %w", err)
	}
	return nil
}

// clientIdle reports whether s has been idle longer than the client's own
// short idle timeout (nhsid_idle_timeout), so it must not be reused for
// this client. Like the session's own idle timeout it ends nothing.
func clientIdle(c *Client, s *authn.Session, now time.Time) bool {
	return c.IdleTimeout > 0 && !now.Before(s.LastSeenAt.Add(time.Duration(c.IdleTimeout)*time.Second))
}
