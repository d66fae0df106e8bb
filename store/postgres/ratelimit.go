package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nhsid/nhsid/internal/ratelimit"
)

var _ ratelimit.Store = (*Store)(nil)

// RateIncr implements ratelimit.Store in one atomic upsert.
func (s *Store) RateIncr(ctx context.Context, key string, now time.Time, window time.Duration) (ratelimit.State, error) {
	var st ratelimit.State
	var locked *time.Time
	err := s.db(ctx).QueryRow(ctx, `
INSERT INTO rate_limits (key, count, window_start, last_at) VALUES ($1, 1, $2, $2)
ON CONFLICT (key) DO UPDATE SET
    count        = CASE WHEN rate_limits.window_start <= $2 - $3::interval THEN 1 ELSE rate_limits.count + 1 END,
    window_start = CASE WHEN rate_limits.window_start <= $2 - $3::interval THEN $2 ELSE rate_limits.window_start END,
    last_at      = $2
RETURNING count, window_start, last_at, locked_until`,
		key, now.UTC(), window).Scan(&st.Count, &st.Start, &st.Last, &locked)
	if err != nil {
		return st, fmt.Errorf("rate incr: %w", translate(err))
	}
	if locked != nil {
		st.LockedUntil = *locked
	}
	return utcState(st), nil
}

// RateGet implements ratelimit.Store.
func (s *Store) RateGet(ctx context.Context, key string) (ratelimit.State, error) {
	if ra := signInReadOf(ctx, s); ra != nil && ratelimit.PersonKey(ra.uid) == key {
		if r, ok := take(ra, ctx, &ra.rate); ok {
			return r.v, r.err
		}
	}
	return rateGet(s.db(ctx).QueryRow(ctx, rateGetSQL, key))
}

const rateGetSQL = `SELECT count, window_start, last_at, locked_until FROM rate_limits WHERE key = $1`

// rateGet reads RateGet's answer from its row.
func rateGet(row pgx.Row) (ratelimit.State, error) {
	var st ratelimit.State
	var locked *time.Time
	err := row.Scan(&st.Count, &st.Start, &st.Last, &locked)
	if errors.Is(err, pgx.ErrNoRows) {
		return ratelimit.State{}, nil
	}
	if err != nil {
		return st, fmt.Errorf("rate get: %w", translate(err))
	}
	if locked != nil {
		st.LockedUntil = *locked
	}
	return utcState(st), nil
}

// RateLock implements ratelimit.Store.
func (s *Store) RateLock(ctx context.Context, key string, until, now time.Time) error {
	_, err := s.db(ctx).Exec(ctx, `
INSERT INTO rate_limits (key, count, window_start, last_at, locked_until) VALUES ($1, 0, $3, $3, $2)
ON CONFLICT (key) DO UPDATE SET locked_until = $2`, key, until.UTC(), now.UTC())
	if err != nil {
		return fmt.Errorf("rate lock: %w", translate(err))
	}
	return nil
}

// RateReset implements ratelimit.Store.
func (s *Store) RateReset(ctx context.Context, key string) error {
	if _, err := s.db(ctx).Exec(ctx, `DELETE FROM rate_limits WHERE key = $1`, key); err != nil {
		return fmt.Errorf("rate reset: %w", translate(err))
	}
	return nil
}

// RatePurge implements ratelimit.Store, in batches so that no long lock is
// held.
func (s *Store) RatePurge(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		tag, err := s.db(ctx).Exec(ctx, `
DELETE FROM rate_limits WHERE key IN (
    SELECT key FROM rate_limits
    WHERE last_at < $1 AND (locked_until IS NULL OR locked_until < $1)
    LIMIT 1000 FOR UPDATE SKIP LOCKED)`, before.UTC())
		if err != nil {
			return total, fmt.Errorf("rate purge: %w", translate(err))
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 1000 {
			return total, nil
		}
	}
}

func utcState(st ratelimit.State) ratelimit.State {
	st.Start = st.Start.UTC()
	st.Last = st.Last.UTC()
	if !st.LockedUntil.IsZero() {
		st.LockedUntil = st.LockedUntil.UTC()
	}
	return st
}
