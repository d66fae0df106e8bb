package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nhsid/nhsid/onboarding"
)

var _ onboarding.Store = (*Store)(nil)

// CreateSignup implements onboarding.Store.
func (s *Store) CreateSignup(ctx context.Context, su onboarding.Signup) error {
	data, err := json.Marshal(su)
	if err != nil {
		return fmt.Errorf("create signup: %w", err)
	}
	_, err = s.db(ctx).Exec(ctx, `INSERT INTO onboarding_signups (token_hash, email, data, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5)`, su.TokenHash, su.Email, data, su.CreatedAt, su.ExpiresAt)
	if err != nil {
		return fmt.Errorf("create signup: %w", translate(err))
	}
	return nil
}

// TakeSignup implements onboarding.Store.
func (s *Store) TakeSignup(ctx context.Context, tokenHash []byte, now time.Time) (onboarding.Signup, error) {
	var data []byte
	err := s.db(ctx).QueryRow(ctx, `DELETE FROM onboarding_signups WHERE token_hash = $1 AND expires_at > $2 RETURNING data`,
		tokenHash, now).Scan(&data)
	if err != nil {
		return onboarding.Signup{}, fmt.Errorf("take signup: %w", translate(err))
	}
	var su onboarding.Signup
	if err := json.Unmarshal(data, &su); err != nil {
		return onboarding.Signup{}, fmt.Errorf("take signup: decode: %w", err)
	}
	su.TokenHash = tokenHash
	return su, nil
}

func scanApp(row pgx.Row) (onboarding.Application, error) {
	var data []byte
	if err := row.Scan(&data); err != nil {
		return onboarding.Application{}, err
	}
	var a onboarding.Application
	if err := json.Unmarshal(data, &a); err != nil {
		return a, fmt.Errorf("decode application: %w", err)
	}
	return a, nil
}

// CreateApplication implements onboarding.Store.
func (s *Store) CreateApplication(ctx context.Context, a onboarding.Application) error {
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("create application: %w", err)
	}
	_, err = s.db(ctx).Exec(ctx, `INSERT INTO onboarding_applications (id, integrator_uid, status, data, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, a.ID, a.IntegratorUID, a.Status, data, a.CreatedAt, a.UpdatedAt)
	if err != nil {
		return fmt.Errorf("create application %s: %w", a.ID, translate(err))
	}
	return nil
}

// GetApplication implements onboarding.Store.
func (s *Store) GetApplication(ctx context.Context, id string) (onboarding.Application, error) {
	a, err := scanApp(s.db(ctx).QueryRow(ctx, `SELECT data FROM onboarding_applications WHERE id = $1`, id))
	if err != nil {
		return a, fmt.Errorf("get application %s: %w", id, translate(err))
	}
	return a, nil
}

// UpdateApplication implements onboarding.Store: the row is locked while
// fn runs.
func (s *Store) UpdateApplication(ctx context.Context, id string, fn func(*onboarding.Application) error) (onboarding.Application, error) {
	var a onboarding.Application
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		a, err = scanApp(tx.QueryRow(ctx, `SELECT data FROM onboarding_applications WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return fmt.Errorf("update application %s: %w", id, translate(err))
		}
		integrator := a.IntegratorUID
		if err := fn(&a); err != nil {
			return err
		}
		a.ID, a.IntegratorUID = id, integrator
		data, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("update application: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE onboarding_applications SET status = $2, data = $3, updated_at = $4 WHERE id = $1`,
			id, a.Status, data, a.UpdatedAt); err != nil {
			return fmt.Errorf("update application %s: %w", id, translate(err))
		}
		return nil
	})
	if err != nil {
		return onboarding.Application{}, err
	}
	return a, nil
}

// ListApplications implements onboarding.Store.
func (s *Store) ListApplications(ctx context.Context, f onboarding.Filter) ([]onboarding.Application, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT data FROM onboarding_applications
		WHERE ($1 = '' OR integrator_uid = $1) AND (coalesce(cardinality($2::text[]), 0) = 0 OR status = ANY($2))
		ORDER BY created_at, id`, f.IntegratorUID, f.Statuses)
	if err != nil {
		return nil, fmt.Errorf("list applications: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (onboarding.Application, error) { return scanApp(r) })
	if err != nil {
		return nil, fmt.Errorf("list applications: %w", translate(err))
	}
	return out, nil
}
