package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nhsid/nhsid/policy"
)

var _ policy.RiskStore = (*Store)(nil)

const lockRiskProfile = `SELECT profile FROM risk_profiles WHERE person_uid = $1 FOR UPDATE`

func scanRiskProfile(row pgx.Row, uid string) (policy.RiskProfile, error) {
	p := policy.RiskProfile{PersonUID: uid}
	var raw []byte
	err := row.Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, nil
	}
	if err != nil {
		return p, translate(err)
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, fmt.Errorf("decode: %w", err)
	}
	p.PersonUID = uid
	return p, nil
}

// GetRiskProfile implements policy.RiskStore.
func (s *Store) GetRiskProfile(ctx context.Context, personUID string) (policy.RiskProfile, error) {
	p, err := scanRiskProfile(s.db(ctx).QueryRow(ctx, `SELECT profile FROM risk_profiles WHERE person_uid = $1`, personUID), personUID)
	if err != nil {
		return p, fmt.Errorf("get risk profile: %w", err)
	}
	return p, nil
}

// UpdateRiskProfile implements policy.RiskStore. Outside a transaction it
// first tries optimistically: read the row and its version (xmin), apply
// fn, and write only if the version is unchanged, two statements and no
// transaction (every sign-in updates its person's profile). When the row
// is new or changed meanwhile, it runs the read-modify-write with the row
// locked, creating it on first use.
func (s *Store) UpdateRiskProfile(ctx context.Context, personUID string, fn func(*policy.RiskProfile) error) (policy.RiskProfile, error) {
	_, inTx := ctx.Value(txKey{}).(pgx.Tx)
	_, piped := pipelineOf(ctx)
	if !inTx && !piped {
		written, done, err := s.updateRiskOptimistic(ctx, personUID, fn)
		if err != nil {
			return policy.RiskProfile{}, fmt.Errorf("update risk profile: %w", translate(err))
		}
		if done {
			return decodeWrittenRisk(written)
		}
	}
	var written []byte
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// Lock the row; on a person's first sign-in, create it first so
		// that FOR UPDATE has something to lock (every later sign-in
		// saves that round trip).
		var raw []byte
		err := tx.QueryRow(ctx, lockRiskProfile, personUID).Scan(&raw)
		if errors.Is(err, pgx.ErrNoRows) {
			if _, err := tx.Exec(ctx, `INSERT INTO risk_profiles (person_uid, profile, updated_at) VALUES ($1, '{}', now())
ON CONFLICT (person_uid) DO NOTHING`, personUID); err != nil {
				return err
			}
			err = tx.QueryRow(ctx, lockRiskProfile, personUID).Scan(&raw)
		}
		if err != nil {
			return err
		}
		p, raw, err := applyRisk(personUID, raw, fn)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE risk_profiles SET profile = $2, updated_at = $3 WHERE person_uid = $1`,
			personUID, raw, p.UpdatedAt.UTC()); err != nil {
			return err
		}
		written = raw
		return nil
	})
	if err != nil {
		return policy.RiskProfile{}, fmt.Errorf("update risk profile: %w", translate(err))
	}
	return decodeWrittenRisk(written)
}

// applyRisk decodes a stored profile, applies fn and encodes the result.
func applyRisk(personUID string, raw []byte, fn func(*policy.RiskProfile) error) (policy.RiskProfile, []byte, error) {
	p := policy.RiskProfile{PersonUID: personUID}
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, nil, fmt.Errorf("decode: %w", err)
	}
	if err := fn(&p); err != nil {
		return p, nil, err
	}
	p.PersonUID = personUID
	out, err := json.Marshal(p)
	if err != nil {
		return p, nil, fmt.Errorf("encode: %w", err)
	}
	return p, out, nil
}

// updateRiskOptimistic is UpdateRiskProfile's unlocked attempt, returning
// the profile as written; done is false when the locked path must decide
// (no row yet, or the row changed between the read and the write).
func (s *Store) updateRiskOptimistic(ctx context.Context, personUID string, fn func(*policy.RiskProfile) error) ([]byte, bool, error) {
	var raw []byte
	var version string
	err := s.pool.QueryRow(ctx, `SELECT profile, xmin::text FROM risk_profiles WHERE person_uid = $1`, personUID).Scan(&raw, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	p, raw, err := applyRisk(personUID, raw, fn)
	if err != nil {
		return nil, false, err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE risk_profiles SET profile = $2, updated_at = $3
		WHERE person_uid = $1 AND xmin = $4::xid`, personUID, raw, p.UpdatedAt.UTC(), version)
	if err != nil {
		return nil, false, err
	}
	return raw, tag.RowsAffected() == 1, nil
}

// decodeWrittenRisk returns the profile as stored, decoded from the JSON
// just written, so both adapters return the same values (times rounded
// the way JSON keeps them).
func decodeWrittenRisk(raw []byte) (policy.RiskProfile, error) {
	var p policy.RiskProfile
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, fmt.Errorf("update risk profile: %w", err)
	}
	return p, nil
}

// DeleteRiskProfilesBefore implements policy.RiskStore.
func (s *Store) DeleteRiskProfilesBefore(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.db(ctx).Exec(ctx, `DELETE FROM risk_profiles WHERE updated_at < $1`, before.UTC())
	if err != nil {
		return 0, fmt.Errorf("delete risk profiles: %w", translate(err))
	}
	return int(tag.RowsAffected()), nil
}
