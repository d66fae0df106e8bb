package server

import (
	"context"
	"net/http"
	"time"

	"github.com/nhsid/nhsid/internal/jobs"
)

// limitAndBound wraps a listener's mux: a deadline on each request's
// context (database.request_timeout), so that waiting for a pooled
// connection or an unreachable database ends in a clean 503 instead of a
// hang, and the rate limits (internal/ratelimit) keyed by the client IP
// the instrument middleware worked out.
func (s *Server) limitAndBound(next http.Handler) http.Handler {
	h := s.Limiter.Middleware(func(r *http.Request) string { return ClientIP(r.Context()) }, next)
	timeout := s.cfg.Database.RequestTimeout
	if timeout <= 0 || s.pool == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// rateLimitPurgeEvery is how often idle rate-limit state is deleted.
const rateLimitPurgeEvery = 10 * time.Minute

// purgeRateLimits deletes idle rate-limit and lockout state until ctx
// ends, on one replica at a time (the store's job lock), in batches.
func (s *Server) purgeRateLimits(ctx context.Context) {
	if s.Limiter == nil {
		return
	}
	run := func(ctx context.Context) error {
		n, err := s.Limiter.Purge(ctx)
		if err == nil && n > 0 {
			s.log.InfoContext(ctx, "purged idle rate limit state", "rows", n)
		}
		return err
	}
	jobs.Every(ctx, rateLimitPurgeEvery, nil, func(ctx context.Context) error {
		return jobs.Locked(ctx, s.Store, "ratelimit-purge", false, run)
	}, func(err error) { s.log.WarnContext(ctx, "purge rate limit state", "err", err.Error()) })
}
