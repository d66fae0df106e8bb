package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/federation/saml"
	"github.com/nhsid/nhsid/idp"
)

var (
	_ authn.ParticipantStore    = (*Store)(nil)
	_ authn.ExpiredSessionStore = (*Store)(nil)
	_ idp.LogoutDeliveryStore   = (*Store)(nil)
	_ saml.LogoutQueue          = (*Store)(nil)
)

// AddSessionParticipant implements authn.ParticipantStore.
func (s *Store) AddSessionParticipant(ctx context.Context, p authn.SessionParticipant) error {
	err := s.execNoAnswer(ctx, `INSERT INTO session_participants (sid, kind, party_id, first_at)
		VALUES ($1, $2, $3, $4) ON CONFLICT (sid, kind, party_id) DO NOTHING`,
		p.SID, p.Kind, p.PartyID, p.FirstAt.UTC())
	if err != nil {
		return fmt.Errorf("add session participant: %w", translate(err))
	}
	return nil
}

// ListSessionParticipants implements authn.ParticipantStore.
func (s *Store) ListSessionParticipants(ctx context.Context, sid string) ([]authn.SessionParticipant, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT sid, kind, party_id, first_at FROM session_participants
		WHERE sid = $1 ORDER BY first_at, kind, party_id`, sid)
	if err != nil {
		return nil, fmt.Errorf("list session participants: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (authn.SessionParticipant, error) {
		var p authn.SessionParticipant
		err := r.Scan(&p.SID, &p.Kind, &p.PartyID, scanTime(&p.FirstAt))
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("list session participants: %w", translate(err))
	}
	return out, nil
}

// ListExpiredSessions implements authn.ExpiredSessionStore.
func (s *Store) ListExpiredSessions(ctx context.Context, now time.Time, limit int) ([]authn.Session, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT `+sessionColumns+` FROM sessions
		WHERE ended_at IS NULL AND expires_at <= $1 ORDER BY expires_at, sid LIMIT $2`, now.UTC(), limitArg(limit))
	if err != nil {
		return nil, fmt.Errorf("list expired sessions: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (authn.Session, error) { return scanSession(r) })
	if err != nil {
		return nil, fmt.Errorf("list expired sessions: %w", translate(err))
	}
	return out, nil
}

const deliveryColumns = `id, client_id, uri, sid, subject, jti, token, attempts, created_at,
	next_attempt_at, delivered_at, failed_at, last_error`

func scanDelivery(row pgx.Row) (idp.LogoutDelivery, error) {
	var d idp.LogoutDelivery
	err := row.Scan(&d.ID, &d.ClientID, &d.URI, &d.SID, &d.Subject, &d.JTI, &d.Token, &d.Attempts,
		scanTime(&d.CreatedAt), scanTime(&d.NextAttemptAt), scanTime(&d.DeliveredAt), scanTime(&d.FailedAt), &d.LastError)
	return d, err
}

// EnqueueLogoutDelivery implements idp.LogoutDeliveryStore.
func (s *Store) EnqueueLogoutDelivery(ctx context.Context, d idp.LogoutDelivery) error {
	_, err := s.db(ctx).Exec(ctx, `INSERT INTO logout_deliveries (`+deliveryColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		d.ID, d.ClientID, d.URI, d.SID, d.Subject, d.JTI, d.Token, d.Attempts, d.CreatedAt.UTC(),
		d.NextAttemptAt.UTC(), nullTime(d.DeliveredAt), nullTime(d.FailedAt), d.LastError)
	if err != nil {
		return fmt.Errorf("enqueue logout delivery: %w", translate(err))
	}
	return nil
}

// ClaimLogoutDeliveries implements idp.LogoutDeliveryStore: due rows are
// locked with SKIP LOCKED, so concurrent replicas claim disjoint sets, and
// leased by moving next_attempt_at forward.
func (s *Store) ClaimLogoutDeliveries(ctx context.Context, now, leaseUntil time.Time, limit int) ([]idp.LogoutDelivery, error) {
	rows, err := s.db(ctx).Query(ctx, `UPDATE logout_deliveries SET next_attempt_at = $2
		WHERE id IN (SELECT id FROM logout_deliveries
			WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1
			ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
		RETURNING `+deliveryColumns, now.UTC(), leaseUntil.UTC(), limitArg(limit))
	if err != nil {
		return nil, fmt.Errorf("claim logout deliveries: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (idp.LogoutDelivery, error) { return scanDelivery(r) })
	if err != nil {
		return nil, fmt.Errorf("claim logout deliveries: %w", translate(err))
	}
	return out, nil
}

// UpdateLogoutDelivery implements idp.LogoutDeliveryStore.
func (s *Store) UpdateLogoutDelivery(ctx context.Context, id string, fn func(*idp.LogoutDelivery) error) (idp.LogoutDelivery, error) {
	var d idp.LogoutDelivery
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		d, err = scanDelivery(tx.QueryRow(ctx, `SELECT `+deliveryColumns+` FROM logout_deliveries WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return translate(err)
		}
		if err := fn(&d); err != nil {
			return err
		}
		d.ID = id
		_, err = tx.Exec(ctx, `UPDATE logout_deliveries SET client_id = $2, uri = $3, sid = $4, subject = $5, jti = $6,
			token = $7, attempts = $8, created_at = $9, next_attempt_at = $10, delivered_at = $11, failed_at = $12,
			last_error = $13 WHERE id = $1`,
			id, d.ClientID, d.URI, d.SID, d.Subject, d.JTI, d.Token, d.Attempts, d.CreatedAt.UTC(),
			d.NextAttemptAt.UTC(), nullTime(d.DeliveredAt), nullTime(d.FailedAt), d.LastError)
		return translate(err)
	})
	if err != nil {
		return idp.LogoutDelivery{}, fmt.Errorf("update logout delivery: %w", err)
	}
	return d, nil
}

// GetLogoutDelivery implements idp.LogoutDeliveryStore.
func (s *Store) GetLogoutDelivery(ctx context.Context, id string) (idp.LogoutDelivery, error) {
	d, err := scanDelivery(s.db(ctx).QueryRow(ctx, `SELECT `+deliveryColumns+` FROM logout_deliveries WHERE id = $1`, id))
	if err != nil {
		return idp.LogoutDelivery{}, fmt.Errorf("get logout delivery: %w", translate(err))
	}
	return d, nil
}

// gcBatch bounds each GC delete, so a large backlog never holds long locks.
var gcBatch int64 = 1000 // a var so that tests can exercise several batches

// PurgeExpiredSessionData deletes, in batches, sign-in flows and WebAuthn
// challenges that expired before before, and back-channel logout
// deliveries (OIDC and SAML) that were delivered or given up before it. It returns how
// many rows it removed.
func (s *Store) PurgeExpiredSessionData(ctx context.Context, before time.Time) (int, error) {
	total := 0
	for _, q := range []string{
		`DELETE FROM flows WHERE ctid IN (SELECT ctid FROM flows WHERE expires_at < $1 LIMIT $2)`,
		`DELETE FROM challenges WHERE ctid IN (SELECT ctid FROM challenges WHERE expires_at < $1 LIMIT $2)`,
		`DELETE FROM logout_deliveries WHERE id IN (SELECT id FROM logout_deliveries
			WHERE delivered_at < $1 OR failed_at < $1 LIMIT $2)`,
		`DELETE FROM saml_logout_deliveries WHERE id IN (SELECT id FROM saml_logout_deliveries
			WHERE delivered_at < $1 OR failed_at < $1 LIMIT $2)`,
	} {
		for {
			tag, err := s.db(ctx).Exec(ctx, q, before.UTC(), gcBatch)
			if err != nil {
				return total, fmt.Errorf("purge session data: %w", translate(err))
			}
			total += int(tag.RowsAffected())
			if tag.RowsAffected() < gcBatch || ctx.Err() != nil {
				break
			}
		}
	}
	return total, ctx.Err()
}

const samlLogoutColumns = `id, entity_id, location, sid, name_id, session_index, reason, attempts, created_at,
	next_attempt_at, delivered_at, failed_at, last_error`

func scanSAMLLogout(row pgx.Row) (saml.LogoutDelivery, error) {
	var d saml.LogoutDelivery
	err := row.Scan(&d.ID, &d.EntityID, &d.Location, &d.SID, &d.NameID, &d.SessionIndex, &d.Reason, &d.Attempts,
		scanTime(&d.CreatedAt), scanTime(&d.NextAttemptAt), scanTime(&d.DeliveredAt), scanTime(&d.FailedAt), &d.LastError)
	return d, err
}

// samlLogoutArgs are d's columns in samlLogoutColumns order.
func samlLogoutArgs(d saml.LogoutDelivery) []any {
	return []any{d.ID, d.EntityID, d.Location, d.SID, d.NameID, d.SessionIndex, d.Reason, d.Attempts, d.CreatedAt.UTC(),
		d.NextAttemptAt.UTC(), nullTime(d.DeliveredAt), nullTime(d.FailedAt), d.LastError}
}

// EnqueueSAMLLogout implements saml.LogoutQueue.
func (s *Store) EnqueueSAMLLogout(ctx context.Context, d saml.LogoutDelivery) error {
	_, err := s.db(ctx).Exec(ctx, `INSERT INTO saml_logout_deliveries (`+samlLogoutColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`, samlLogoutArgs(d)...)
	if err != nil {
		return fmt.Errorf("enqueue saml logout: %w", translate(err))
	}
	return nil
}

// ClaimSAMLLogouts implements saml.LogoutQueue like ClaimLogoutDeliveries:
// due rows locked with SKIP LOCKED and leased by moving next_attempt_at.
func (s *Store) ClaimSAMLLogouts(ctx context.Context, now, leaseUntil time.Time, limit int) ([]saml.LogoutDelivery, error) {
	rows, err := s.db(ctx).Query(ctx, `UPDATE saml_logout_deliveries SET next_attempt_at = $2
		WHERE id IN (SELECT id FROM saml_logout_deliveries
			WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1
			ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
		RETURNING `+samlLogoutColumns, now.UTC(), leaseUntil.UTC(), limitArg(limit))
	if err != nil {
		return nil, fmt.Errorf("claim saml logouts: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (saml.LogoutDelivery, error) { return scanSAMLLogout(r) })
	if err != nil {
		return nil, fmt.Errorf("claim saml logouts: %w", translate(err))
	}
	return out, nil
}

// UpdateSAMLLogout implements saml.LogoutQueue.
func (s *Store) UpdateSAMLLogout(ctx context.Context, id string, fn func(*saml.LogoutDelivery) error) (saml.LogoutDelivery, error) {
	var d saml.LogoutDelivery
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		d, err = scanSAMLLogout(tx.QueryRow(ctx, `SELECT `+samlLogoutColumns+` FROM saml_logout_deliveries WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return translate(err)
		}
		if err := fn(&d); err != nil {
			return err
		}
		d.ID = id
		_, err = tx.Exec(ctx, `UPDATE saml_logout_deliveries SET entity_id = $2, location = $3, sid = $4, name_id = $5,
			session_index = $6, reason = $7, attempts = $8, created_at = $9, next_attempt_at = $10, delivered_at = $11,
			failed_at = $12, last_error = $13 WHERE id = $1`, samlLogoutArgs(d)...)
		return translate(err)
	})
	if err != nil {
		return saml.LogoutDelivery{}, fmt.Errorf("update saml logout: %w", err)
	}
	return d, nil
}
