package server

import (
	"context"
	"net/http"
	"time"
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
	t := time.NewTicker(rateLimitPurgeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		run := func(ctx context.Context) error {
			n, err := s.Limiter.Purge(ctx)
			if err == nil && n > 0 {
				s.log.InfoContext(ctx, "purged idle rate limit state", "rows", n)
			}
			return err
		}
		var err error
		if l, ok := s.Store.(interface {
			WithLock(context.Context, string, bool, func(context.Context) error) (bool, error)
		}); ok {
			_, err = l.WithLock(ctx, "ratelimit-purge", false, run)
		} else {
			err = run(ctx)
		}
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "purge rate limit state", "err", err.Error())
		}
	}
}
