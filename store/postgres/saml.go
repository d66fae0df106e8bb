package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nhsid/nhsid/federation/saml"
	"github.com/nhsid/nhsid/store"
)

var _ saml.Store = (*Store)(nil)

const spColumns = `id, entity_id, metadata_xml, acs, slo, settings, created_at, updated_at`

func scanSP(row pgx.Row) (saml.ServiceProvider, error) {
	var sp saml.ServiceProvider
	var acs, slo, settings []byte
	err := row.Scan(&sp.ID, &sp.EntityID, &sp.MetadataXML, &acs, &slo, &settings, scanTime(&sp.CreatedAt), scanTime(&sp.UpdatedAt))
	if err != nil {
		return sp, err
	}
	if err := errors.Join(json.Unmarshal(acs, &sp.ACS), json.Unmarshal(slo, &sp.SLO), json.Unmarshal(settings, &sp.Settings)); err != nil {
		return sp, fmt.Errorf("decode saml sp %s: %w", sp.ID, err)
	}
	if len(sp.SLO) == 0 {
		sp.SLO = nil
	}
	return sp, nil
}

func spArgs(sp saml.ServiceProvider) ([]any, error) {
	acs, err1 := json.Marshal(orEmpty(sp.ACS))
	slo, err2 := json.Marshal(orEmpty(sp.SLO))
	settings, err3 := json.Marshal(sp.Settings)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("encode saml sp: %w", err)
	}
	return []any{sp.ID, sp.EntityID, sp.MetadataXML, acs, slo, settings, nullTime(sp.CreatedAt), nullTime(sp.UpdatedAt)}, nil
}

func orEmpty(e []saml.Endpoint) []saml.Endpoint {
	if e == nil {
		return []saml.Endpoint{}
	}
	return e
}

// CreateServiceProvider implements saml.Store.
func (s *Store) CreateServiceProvider(ctx context.Context, sp saml.ServiceProvider) error {
	args, err := spArgs(sp)
	if err != nil {
		return err
	}
	_, err = s.db(ctx).Exec(ctx, `INSERT INTO saml_service_providers (`+spColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, args...)
	if err != nil {
		return fmt.Errorf("create saml sp %s: %w", sp.ID, translate(err))
	}
	return nil
}

// GetServiceProvider implements saml.Store.
func (s *Store) GetServiceProvider(ctx context.Context, id string) (saml.ServiceProvider, error) {
	sp, err := scanSP(s.db(ctx).QueryRow(ctx, `SELECT `+spColumns+` FROM saml_service_providers WHERE id = $1`, id))
	if err != nil {
		return saml.ServiceProvider{}, fmt.Errorf("get saml sp %s: %w", id, translate(err))
	}
	return sp, nil
}

// GetServiceProviderByEntityID implements saml.Store.
func (s *Store) GetServiceProviderByEntityID(ctx context.Context, entityID string) (saml.ServiceProvider, error) {
	sp, err := scanSP(s.db(ctx).QueryRow(ctx, `SELECT `+spColumns+` FROM saml_service_providers WHERE entity_id = $1`, entityID))
	if err != nil {
		return saml.ServiceProvider{}, fmt.Errorf("get saml sp by entity id: %w", translate(err))
	}
	return sp, nil
}

// UpdateServiceProvider implements saml.Store (row locked while fn runs).
func (s *Store) UpdateServiceProvider(ctx context.Context, id string, fn func(*saml.ServiceProvider) error) (saml.ServiceProvider, error) {
	var out saml.ServiceProvider
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		cur, err := scanSP(tx.QueryRow(ctx, `SELECT `+spColumns+` FROM saml_service_providers WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return fmt.Errorf("update saml sp %s: %w", id, translate(err))
		}
		sp := cur
		if err := fn(&sp); err != nil {
			return err
		}
		sp.ID, sp.EntityID = cur.ID, cur.EntityID
		args, err := spArgs(sp)
		if err != nil {
			return err
		}
		out, err = scanSP(tx.QueryRow(ctx, `UPDATE saml_service_providers SET metadata_xml = $3, acs = $4, slo = $5,
			settings = $6, created_at = $7, updated_at = $8 WHERE id = $1 AND entity_id = $2 RETURNING `+spColumns, args...))
		if err != nil {
			return fmt.Errorf("update saml sp %s: %w", id, translate(err))
		}
		return nil
	})
	if err != nil {
		return saml.ServiceProvider{}, err
	}
	return out, nil
}

// ListServiceProviders implements saml.Store.
func (s *Store) ListServiceProviders(ctx context.Context, after string, limit int) ([]saml.ServiceProvider, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT `+spColumns+` FROM saml_service_providers WHERE id > $1 ORDER BY id LIMIT $2`, after, limitArg(limit))
	if err != nil {
		return nil, fmt.Errorf("list saml sps: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (saml.ServiceProvider, error) { return scanSP(r) })
	if err != nil {
		return nil, fmt.Errorf("list saml sps: %w", translate(err))
	}
	return out, nil
}

// RememberRequestID implements saml.Store: an expired record is replaced,
// an unexpired one is a replay (store.ErrExists).
func (s *Store) RememberRequestID(ctx context.Context, entityID, requestID string, expiresAt, now time.Time) error {
	tag, err := s.db(ctx).Exec(ctx, `INSERT INTO saml_request_ids (entity_id, request_id, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (entity_id, request_id) DO UPDATE SET expires_at = EXCLUDED.expires_at
		WHERE saml_request_ids.expires_at <= $4`, entityID, requestID, expiresAt.UTC(), now.UTC())
	if err != nil {
		return fmt.Errorf("remember saml request id: %w", translate(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("remember saml request id: %w", store.ErrExists)
	}
	// Prune now and then; the index makes it cheap.
	if requestID != "" && requestID[len(requestID)-1]%16 == 0 {
		_, _ = s.db(ctx).Exec(ctx, `DELETE FROM saml_request_ids WHERE expires_at <= $1`, now.UTC())
	}
	return nil
}

// AddParticipant implements saml.Store.
func (s *Store) AddParticipant(ctx context.Context, p saml.Participant) error {
	_, err := s.db(ctx).Exec(ctx, `INSERT INTO saml_participants (sid, entity_id, name_id, session_index, created_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sid, entity_id) DO UPDATE SET name_id = EXCLUDED.name_id,
		session_index = EXCLUDED.session_index`, p.SID, p.EntityID, p.NameID, p.SessionIndex, nullTime(p.CreatedAt))
	if err != nil {
		return fmt.Errorf("add saml participant: %w", translate(err))
	}
	return nil
}

// ListParticipants implements saml.Store.
func (s *Store) ListParticipants(ctx context.Context, sid string) ([]saml.Participant, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT sid, entity_id, name_id, session_index, created_at FROM saml_participants
		WHERE sid = $1 ORDER BY created_at, entity_id`, sid)
	if err != nil {
		return nil, fmt.Errorf("list saml participants: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (saml.Participant, error) {
		var p saml.Participant
		err := r.Scan(&p.SID, &p.EntityID, &p.NameID, &p.SessionIndex, scanTime(&p.CreatedAt))
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("list saml participants: %w", translate(err))
	}
	return out, nil
}
