package server

import (
	"context"
	"net/http"
	"time"

	fedsaml "github.com/nhsid/nhsid/federation/saml"
	"github.com/nhsid/nhsid/internal/jobs"
	"github.com/nhsid/nhsid/internal/outbound"
)

// outboundClient is the one guarded client for integrator-supplied URLs
// (jwks_uri, back-channel logout). Dev servers and tests may reach
// loopback; OutboundAllowPrivate lifts the deny-list altogether.
func outboundClient(opts Options) *http.Client {
	return outbound.New(outbound.Options{AllowLoopback: opts.Dev || opts.OutboundAllowPrivate, AllowPrivate: opts.OutboundAllowPrivate})
}

// wireLogout makes every session end (logout, RP logout, RA action,
// account closure, expiry) go to idp, which revokes the session's tokens
// and queues back-channel logout. federation/saml registers its own
// listener for SAML Single Logout (SOAP back-channel LogoutRequests)
// the same way.
func (s *Server) wireLogout(opts Options) {
	s.Authn.OnSessionEnd(s.IDP)
	s.Authn.OnSessionEnd(s.SAML.BackchannelLogout(outboundClient(opts), fedsaml.SLOConfig{Observe: s.observeLogout("saml")}))
}

// observeLogout counts back-channel logout attempts of kind by outcome
// (nhsid_logout_deliveries_total).
func (s *Server) observeLogout(kind string) func(outcome string) {
	return func(outcome string) { s.logoutAttempts.WithLabelValues(kind, outcome).Inc() }
}

// Intervals of the session background jobs.
const (
	sessionSweepInterval = time.Minute
	gcInterval           = 10 * time.Minute
	// gcGrace keeps expired rows a little longer, for late lookups.
	gcGrace = time.Hour
)

// startSessionJobs runs the back-channel logout workers (OIDC and SAML),
// the absolute-expiry sweeper and the expired-token GC until ctx ends.
// Each is safe with several replicas (SKIP LOCKED leases, job locks).
func (s *Server) startSessionJobs(ctx context.Context) {
	s.bgDone.Add(4)
	go func() {
		defer s.bgDone.Done()
		s.IDP.RunLogoutDelivery(ctx)
	}()
	go func() {
		defer s.bgDone.Done()
		s.SAML.RunLogoutDelivery(ctx)
	}()
	go func() {
		defer s.bgDone.Done()
		s.Authn.RunSessionSweeper(ctx, sessionSweepInterval)
	}()
	go func() {
		defer s.bgDone.Done()
		s.runGC(ctx)
	}()
}

// oauthPurger and sessionPurger are stores that drop expired rows.
type oauthPurger interface {
	PurgeExpiredOAuth(ctx context.Context, before time.Time) (int, error)
}

type sessionPurger interface {
	PurgeExpiredSessionData(ctx context.Context, before time.Time) (int, error)
}

// runGC drops expired codes, tokens, PAR requests, jtis, flows, challenges
// and finished logout deliveries, on one replica at a time.
func (s *Server) runGC(ctx context.Context) {
	jobs.Every(ctx, gcInterval, nil, func(ctx context.Context) error {
		return jobs.Locked(ctx, s.Store, "gc", false, s.gcOnce)
	}, func(err error) { s.log.ErrorContext(ctx, "gc", "err", err) })
}

// gcOnce runs one GC pass.
func (s *Server) gcOnce(ctx context.Context) error {
	before := s.now().Add(-gcGrace)
	n := 0
	if p, ok := s.Store.(oauthPurger); ok {
		m, err := p.PurgeExpiredOAuth(ctx, before)
		if err != nil {
			return err
		}
		n += m
	}
	if p, ok := s.Store.(sessionPurger); ok {
		m, err := p.PurgeExpiredSessionData(ctx, before)
		if err != nil {
			return err
		}
		n += m
	}
	if n > 0 {
		s.log.InfoContext(ctx, "expired rows purged", "rows", n)
	}
	return nil
}
