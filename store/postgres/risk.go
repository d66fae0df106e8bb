package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/nhsid/nhsid/policy"
)

var _ policy.RiskStore = (*Store)(nil)

const lockRiskProfile = `SELECT profile FROM risk_profiles WHERE person_uid = $1 FOR UPDATE`

// GetRiskProfile implements policy.RiskStore. The profile's Version is
// the row's xmin, which changes with every write.
func (s *Store) GetRiskProfile(ctx context.Context, personUID string) (policy.RiskProfile, error) {
	if ra := signInReadOf(ctx, s); ra != nil && ra.uid == personUID {
		if r, ok := take(ra, ctx, &ra.risk); ok {
			return r.v, r.err
		}
	}
	return getRiskProfile(personUID, s.db(ctx).QueryRow(ctx, getRiskSQL, personUID))
}

const getRiskSQL = `SELECT profile, xmin::text FROM risk_profiles WHERE person_uid = $1`

// getRiskProfile reads GetRiskProfile's answer from its row.
func getRiskProfile(personUID string, row pgx.Row) (policy.RiskProfile, error) {
	p := policy.RiskProfile{PersonUID: personUID}
	var raw []byte
	var version string
	err := row.Scan(&raw, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("get risk profile: %w", translate(err))
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, fmt.Errorf("get risk profile: decode: %w", err)
	}
	p.PersonUID, p.Version = personUID, version
	return p, nil
}

// UpdateRiskProfile implements policy.RiskStore. Outside a transaction it
// reads the profile and its version and writes through
// UpdateRiskProfileFrom's optimistic path: two statements and no
// transaction. Inside one it takes the locked path.
func (s *Store) UpdateRiskProfile(ctx context.Context, personUID string, fn func(*policy.RiskProfile) error) (policy.RiskProfile, error) {
	var written []byte
	var err error
	if s.optimisticRisk(ctx) {
		var read policy.RiskProfile
		if read, err = s.GetRiskProfile(ctx, personUID); err != nil {
			return policy.RiskProfile{}, fmt.Errorf("update risk profile: %w", err)
		}
		written, err = s.updateRiskFrom(ctx, read, fn)
	} else {
		written, err = s.updateRiskLocked(ctx, personUID, fn)
	}
	if err != nil {
		return policy.RiskProfile{}, fmt.Errorf("update risk profile: %w", translate(err))
	}
	return decodeWrittenRisk(written)
}

// UpdateRiskProfileFrom implements policy.RiskStore: one UPDATE that
// holds only while the row's xmin is still read's version (every sign-in
// updates its person's profile, right after reading it for the risk
// decision). When the row is new or changed meanwhile, the read-modify-
// write runs again with the row locked, creating it on first use.
func (s *Store) UpdateRiskProfileFrom(ctx context.Context, read policy.RiskProfile, fn func(*policy.RiskProfile) error) error {
	if _, err := s.updateRiskFrom(ctx, read, fn); err != nil {
		return fmt.Errorf("update risk profile: %w", translate(err))
	}
	return nil
}

// optimisticRisk reports whether ctx lets an update skip the row lock: not
// in a caller's transaction or write pipeline, whose isolation the lock is
// part of.
func (s *Store) optimisticRisk(ctx context.Context) bool {
	_, inTx := ctx.Value(txKey{}).(pgx.Tx)
	_, piped := pipelineOf(ctx)
	return !inTx && !piped
}

// riskUpdatedDay is what updated_at keeps of an update's time ($3): its
// day (UTC). The retention purge needs no more, and a column that changes
// once a day leaves the row's index entries alone on the other sign-ins
// of the day, so that PostgreSQL can update the row in place (a
// heap-only tuple, migration 0019) instead of adding index entries.
const riskUpdatedDay = `date_trunc('day', $3::timestamptz, 'UTC')`

// updateRiskIfUnchanged writes a profile only while the row is still the
// version read ($4, its xmin).
const updateRiskIfUnchanged = `UPDATE risk_profiles SET profile = $2, updated_at = ` + riskUpdatedDay + `
	WHERE person_uid = $1 AND xmin = $4::xid`

// updateRiskFrom applies fn to read and writes it if the row is still
// read's version, else takes the locked path. It returns the JSON written.
func (s *Store) updateRiskFrom(ctx context.Context, read policy.RiskProfile, fn func(*policy.RiskProfile) error) ([]byte, error) {
	uid := read.PersonUID
	if read.Version != "" && s.optimisticRisk(ctx) {
		p, raw, err := applyRisk(uid, read, fn)
		if err != nil {
			return nil, err
		}
		tag, err := s.pool.Exec(ctx, updateRiskIfUnchanged, uid, raw, p.UpdatedAt.UTC(), read.Version)
		if err != nil {
			return nil, err
		}
		if tag.RowsAffected() == 1 {
			return raw, nil
		}
	}
	return s.updateRiskLocked(ctx, uid, fn)
}

// QueueRiskProfileUpdate queues UpdateRiskProfileFrom's single UPDATE in
// ctx's write pipeline, so that it commits with the pipeline's other
// writes (a sign-in's session, say). queued is false without a pipeline or
// for a profile not stored yet. After the pipeline is sent, complete must
// be called: if the row had changed meanwhile, the update did not apply,
// and complete runs the locked read-modify-write instead.
func (s *Store) QueueRiskProfileUpdate(ctx context.Context, read policy.RiskProfile, fn func(*policy.RiskProfile) error) (complete func(context.Context) error, queued bool, err error) {
	p, ok := pipelineOf(ctx)
	if !ok || read.Version == "" {
		return nil, false, nil
	}
	uid := read.PersonUID
	np, raw, err := applyRisk(uid, read, fn)
	if err != nil {
		return nil, false, fmt.Errorf("update risk profile: %w", err)
	}
	tag := new(pgconn.CommandTag)
	if err := p.queue(queuedWrite{sql: updateRiskIfUnchanged, args: []any{uid, raw, np.UpdatedAt.UTC(), read.Version}, tag: tag}); err != nil {
		return nil, false, err
	}
	return func(ctx context.Context) error {
		if tag.RowsAffected() == 1 {
			return nil
		}
		if _, err := s.updateRiskLocked(ctx, uid, fn); err != nil {
			return fmt.Errorf("update risk profile: %w", translate(err))
		}
		return nil
	}, true, nil
}

// updateRiskLocked is the read-modify-write under the row's lock.
func (s *Store) updateRiskLocked(ctx context.Context, personUID string, fn func(*policy.RiskProfile) error) ([]byte, error) {
	var written []byte
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// Lock the row; on a person's first sign-in, create it first so
		// that FOR UPDATE has something to lock (every later sign-in
		// saves that round trip).
		var raw []byte
		err := tx.QueryRow(ctx, lockRiskProfile, personUID).Scan(&raw)
		if errors.Is(err, pgx.ErrNoRows) {
			if _, err := tx.Exec(ctx, `INSERT INTO risk_profiles (person_uid, profile, updated_at) VALUES ($1, '{}'::bytea, now())
ON CONFLICT (person_uid) DO NOTHING`, personUID); err != nil {
				return err
			}
			err = tx.QueryRow(ctx, lockRiskProfile, personUID).Scan(&raw)
		}
		if err != nil {
			return err
		}
		cur := policy.RiskProfile{PersonUID: personUID}
		if err := json.Unmarshal(raw, &cur); err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		p, raw, err := applyRisk(personUID, cur, fn)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE risk_profiles SET profile = $2, updated_at = `+riskUpdatedDay+` WHERE person_uid = $1`,
			personUID, raw, p.UpdatedAt.UTC()); err != nil {
			return err
		}
		written = raw
		return nil
	})
	return written, err
}

// applyRisk applies fn to p and encodes the result.
func applyRisk(personUID string, p policy.RiskProfile, fn func(*policy.RiskProfile) error) (policy.RiskProfile, []byte, error) {
	if err := fn(&p); err != nil {
		return p, nil, err
	}
	p.PersonUID, p.Version = personUID, ""
	out, err := json.Marshal(p)
	if err != nil {
		return p, nil, fmt.Errorf("encode: %w", err)
	}
	return p, out, nil
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

// DeleteRiskProfilesBefore implements policy.RiskStore. updated_at holds
// the day of the last update (riskUpdatedDay), so a profile last updated
// on before's day is kept until the next day's purge.
func (s *Store) DeleteRiskProfilesBefore(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.db(ctx).Exec(ctx, `DELETE FROM risk_profiles WHERE updated_at < date_trunc('day', $1::timestamptz, 'UTC')`, before.UTC())
	if err != nil {
		return 0, fmt.Errorf("delete risk profiles: %w", translate(err))
	}
	return int(tag.RowsAffected()), nil
}
