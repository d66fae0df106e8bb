package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/nhsid/nhsid/policy"
)

var _ policy.RBACStore = (*Store)(nil)

// Catalogue kinds in rbac_catalogue.
const (
	kindJobRole    = "job_role"
	kindActivity   = "activity"
	kindWorkgroup  = "workgroup"
	kindAreaOfWork = "area_of_work"
)

// PutCatalogue implements policy.RBACStore: every entry is upserted in one
// transaction.
func (s *Store) PutCatalogue(ctx context.Context, c policy.Catalogue) error {
	type entry struct {
		kind, code string
		doc        any
	}
	var entries []entry
	for _, r := range c.JobRoles {
		entries = append(entries, entry{kindJobRole, r.Code, r})
	}
	for _, a := range c.Activities {
		entries = append(entries, entry{kindActivity, a.Code, a})
	}
	for _, w := range c.Workgroups {
		entries = append(entries, entry{kindWorkgroup, w.Code, w})
	}
	for _, a := range c.AreasOfWork {
		entries = append(entries, entry{kindAreaOfWork, a.Code, a})
	}
	return s.inTx(ctx, func(tx pgx.Tx) error {
		batch := &pgx.Batch{}
		for _, e := range entries {
			doc, err := json.Marshal(e.doc)
			if err != nil {
				return fmt.Errorf("put catalogue: %w", err)
			}
			batch.Queue(`INSERT INTO rbac_catalogue (kind, code, doc) VALUES ($1, $2, $3)
				ON CONFLICT (kind, code) DO UPDATE SET doc = EXCLUDED.doc`, e.kind, e.code, doc)
		}
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("put catalogue: %w", translate(err))
		}
		return nil
	})
}

// GetCatalogue implements policy.RBACStore (one query).
func (s *Store) GetCatalogue(ctx context.Context) (policy.Catalogue, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT kind, doc FROM rbac_catalogue ORDER BY kind, code`)
	if err != nil {
		return policy.Catalogue{}, fmt.Errorf("get catalogue: %w", translate(err))
	}
	defer rows.Close()
	var c policy.Catalogue
	for rows.Next() {
		var kind string
		var doc []byte
		if err := rows.Scan(&kind, &doc); err != nil {
			return policy.Catalogue{}, fmt.Errorf("get catalogue: %w", translate(err))
		}
		switch kind {
		case kindJobRole:
			var r policy.JobRole
			if err := json.Unmarshal(doc, &r); err != nil {
				return policy.Catalogue{}, fmt.Errorf("get catalogue: decode: %w", err)
			}
			c.JobRoles = append(c.JobRoles, r)
		case kindActivity:
			var a policy.Activity
			if err := json.Unmarshal(doc, &a); err != nil {
				return policy.Catalogue{}, fmt.Errorf("get catalogue: decode: %w", err)
			}
			c.Activities = append(c.Activities, a)
		case kindWorkgroup:
			var w policy.Workgroup
			if err := json.Unmarshal(doc, &w); err != nil {
				return policy.Catalogue{}, fmt.Errorf("get catalogue: decode: %w", err)
			}
			c.Workgroups = append(c.Workgroups, w)
		case kindAreaOfWork:
			var a policy.AreaOfWork
			if err := json.Unmarshal(doc, &a); err != nil {
				return policy.Catalogue{}, fmt.Errorf("get catalogue: decode: %w", err)
			}
			c.AreasOfWork = append(c.AreasOfWork, a)
		}
	}
	if err := rows.Err(); err != nil {
		return policy.Catalogue{}, fmt.Errorf("get catalogue: %w", translate(err))
	}
	return c, nil
}

// EnsurePersonOrgID implements policy.RBACStore.
func (s *Store) EnsurePersonOrgID(ctx context.Context, uid, orgCode, candidate string) (string, error) {
	var id string
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO person_orgs (person_orgid, person_uid, org_code) VALUES ($1, $2, $3)
			ON CONFLICT (person_uid, org_code) DO NOTHING`, candidate, uid, orgCode)
		if err != nil {
			return fmt.Errorf("person_orgid: %w", translate(err))
		}
		err = tx.QueryRow(ctx, `SELECT person_orgid FROM person_orgs WHERE person_uid = $1 AND org_code = $2`, uid, orgCode).Scan(&id)
		if err != nil {
			return fmt.Errorf("person_orgid: %w", translate(err))
		}
		return nil
	})
	return id, err
}

const positionColumns = `p.person_roleid, p.person_orgid, p.person_uid, p.org_code, p.role_code, p.activity_codes,
	p.workgroup_codes, p.aow_codes, p.starts_at, p.ends_at, p.created_by, p.created_at, p.pending_approval,
	p.approved_by, p.approved_at, p.bootstrap, p.ended_at, p.ended_by`

func scanPosition(row pgx.Row, withOrg bool) (policy.Position, error) {
	var p policy.Position
	dest := []any{&p.RoleID, &p.OrgID, &p.PersonUID, &p.OrgCode, &p.RoleCode, &p.ActivityCodes,
		&p.WorkgroupCodes, &p.AreaOfWorkCodes, scanTime(&p.StartsAt), scanTime(&p.EndsAt), &p.CreatedBy,
		scanTime(&p.CreatedAt), &p.PendingApproval, &p.ApprovedBy, scanTime(&p.ApprovedAt), &p.Bootstrap,
		scanTime(&p.EndedAt), &p.EndedBy}
	if withOrg {
		dest = append(dest, &p.OrgName)
	}
	if err := row.Scan(dest...); err != nil {
		return policy.Position{}, err
	}
	p.ActivityCodes = noEmpty(p.ActivityCodes)
	p.WorkgroupCodes = noEmpty(p.WorkgroupCodes)
	p.AreaOfWorkCodes = noEmpty(p.AreaOfWorkCodes)
	return p, nil
}

func positionArgs(p policy.Position) []any {
	return []any{p.RoleID, p.OrgID, p.PersonUID, p.OrgCode, p.RoleCode, notNil(p.ActivityCodes),
		notNil(p.WorkgroupCodes), notNil(p.AreaOfWorkCodes), nullTime(p.StartsAt), nullTime(p.EndsAt), p.CreatedBy,
		nullTime(p.CreatedAt), p.PendingApproval, p.ApprovedBy, nullTime(p.ApprovedAt), p.Bootstrap,
		nullTime(p.EndedAt), p.EndedBy}
}

// CreatePosition implements policy.RBACStore.
func (s *Store) CreatePosition(ctx context.Context, p policy.Position) error {
	_, err := s.db(ctx).Exec(ctx, `INSERT INTO positions AS p (person_roleid, person_orgid, person_uid, org_code,
		role_code, activity_codes, workgroup_codes, aow_codes, starts_at, ends_at, created_by, created_at,
		pending_approval, approved_by, approved_at, bootstrap, ended_at, ended_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`, positionArgs(p)...)
	if err != nil {
		return fmt.Errorf("create position %s: %w", p.RoleID, translate(err))
	}
	return nil
}

// GetPosition implements policy.RBACStore.
func (s *Store) GetPosition(ctx context.Context, roleID string) (policy.Position, error) {
	p, err := scanPosition(s.db(ctx).QueryRow(ctx, `SELECT `+positionColumns+` FROM positions p WHERE p.person_roleid = $1`, roleID), false)
	if err != nil {
		return policy.Position{}, fmt.Errorf("get position %s: %w", roleID, translate(err))
	}
	return p, nil
}

// UpdatePosition implements policy.RBACStore (row locked while fn runs).
func (s *Store) UpdatePosition(ctx context.Context, roleID string, fn func(*policy.Position) error) (policy.Position, error) {
	var p policy.Position
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		cur, err := scanPosition(tx.QueryRow(ctx, `SELECT `+positionColumns+` FROM positions p WHERE p.person_roleid = $1 FOR UPDATE`, roleID), false)
		if err != nil {
			return fmt.Errorf("update position %s: %w", roleID, translate(err))
		}
		p = cur
		if err := fn(&p); err != nil {
			return err
		}
		p.RoleID, p.OrgID, p.PersonUID, p.OrgCode = cur.RoleID, cur.OrgID, cur.PersonUID, cur.OrgCode
		p, err = scanPosition(tx.QueryRow(ctx, `UPDATE positions AS p SET role_code = $5, activity_codes = $6,
			workgroup_codes = $7, aow_codes = $8, starts_at = $9, ends_at = $10, created_by = $11, created_at = $12,
			pending_approval = $13, approved_by = $14, approved_at = $15, bootstrap = $16, ended_at = $17, ended_by = $18
			WHERE person_roleid = $1 AND person_orgid = $2 AND person_uid = $3 AND org_code = $4
			RETURNING `+positionColumns, positionArgs(p)...), false)
		if err != nil {
			return fmt.Errorf("update position %s: %w", roleID, translate(err))
		}
		return nil
	})
	if err != nil {
		return policy.Position{}, err
	}
	return p, nil
}

// ListPositions implements policy.RBACStore: one query, joined with the
// organisation for its name.
func (s *Store) ListPositions(ctx context.Context, uid string) ([]policy.Position, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT `+positionColumns+`, coalesce(o.name, '')
		FROM positions p LEFT JOIN organisations o ON o.code = p.org_code
		WHERE p.person_uid = $1 ORDER BY p.created_at NULLS FIRST, p.person_roleid`, uid)
	if err != nil {
		return nil, fmt.Errorf("list positions: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (policy.Position, error) { return scanPosition(r, true) })
	if err != nil {
		return nil, fmt.Errorf("list positions: %w", translate(err))
	}
	return noEmpty(out), nil
}

// ListPositionsOf implements policy.RBACStore.
func (s *Store) ListPositionsOf(ctx context.Context, uids []string) (map[string][]policy.Position, error) {
	out := map[string][]policy.Position{}
	if len(uids) == 0 {
		return out, nil
	}
	rows, err := s.db(ctx).Query(ctx, `SELECT `+positionColumns+`, coalesce(o.name, '')
		FROM positions p LEFT JOIN organisations o ON o.code = p.org_code
		WHERE p.person_uid = ANY($1) ORDER BY p.person_uid, p.created_at NULLS FIRST, p.person_roleid`, uids)
	if err != nil {
		return nil, fmt.Errorf("list positions: %w", translate(err))
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (policy.Position, error) { return scanPosition(r, true) })
	if err != nil {
		return nil, fmt.Errorf("list positions: %w", translate(err))
	}
	for _, p := range ps {
		out[p.PersonUID] = append(out[p.PersonUID], p)
	}
	return out, nil
}

// CountLivePositions implements policy.RBACStore.
func (s *Store) CountLivePositions(ctx context.Context, roleCodes []string) (int, error) {
	var n int
	err := s.db(ctx).QueryRow(ctx, `SELECT count(*) FROM positions WHERE ended_at IS NULL AND role_code = ANY($1)`,
		notNil(roleCodes)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count positions: %w", translate(err))
	}
	return n, nil
}

// AddVerification implements policy.RBACStore.
func (s *Store) AddVerification(ctx context.Context, v policy.Verification) error {
	_, err := s.db(ctx).Exec(ctx, `INSERT INTO identity_verifications (person_uid, evidence, verified_on, verified_by, level, recorded_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, v.PersonUID, notNil(v.Evidence), nullTime(v.VerifiedOn), v.VerifiedBy, v.Level, nullTime(v.RecordedAt))
	if err != nil {
		return fmt.Errorf("add verification: %w", translate(err))
	}
	return nil
}

// ListVerifications implements policy.RBACStore.
func (s *Store) ListVerifications(ctx context.Context, uid string) ([]policy.Verification, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT person_uid, evidence, verified_on, verified_by, level, recorded_at
		FROM identity_verifications WHERE person_uid = $1 ORDER BY recorded_at NULLS FIRST, id`, uid)
	if err != nil {
		return nil, fmt.Errorf("list verifications: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (policy.Verification, error) {
		var v policy.Verification
		err := r.Scan(&v.PersonUID, &v.Evidence, scanTime(&v.VerifiedOn), &v.VerifiedBy, &v.Level, scanTime(&v.RecordedAt))
		v.Evidence = noEmpty(v.Evidence)
		return v, err
	})
	if err != nil {
		return nil, fmt.Errorf("list verifications: %w", translate(err))
	}
	return noEmpty(out), nil
}
