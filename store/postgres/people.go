package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/nhsid/nhsid/policy"
)

// CreateOrganisation implements policy.Store.
func (s *Store) CreateOrganisation(ctx context.Context, o policy.Organisation) error {
	_, err := s.db(ctx).Exec(ctx,
		`INSERT INTO organisations (code, name, parent_code, created_at) VALUES ($1, $2, $3, $4)`,
		o.Code, o.Name, o.ParentCode, nullTime(o.CreatedAt))
	if err != nil {
		return fmt.Errorf("create organisation %s: %w", o.Code, translate(err))
	}
	return nil
}

const orgColumns = `code, name, parent_code, created_at`

func scanOrg(row pgx.Row) (policy.Organisation, error) {
	var o policy.Organisation
	err := row.Scan(&o.Code, &o.Name, &o.ParentCode, scanTime(&o.CreatedAt))
	return o, err
}

// GetOrganisation implements policy.Store.
func (s *Store) GetOrganisation(ctx context.Context, code string) (policy.Organisation, error) {
	o, err := scanOrg(s.db(ctx).QueryRow(ctx, `SELECT `+orgColumns+` FROM organisations WHERE code = $1`, code))
	if err != nil {
		return policy.Organisation{}, fmt.Errorf("get organisation %s: %w", code, translate(err))
	}
	return o, nil
}

// ListOrganisations implements policy.Store (limit <= 0: no limit).
func (s *Store) ListOrganisations(ctx context.Context, after string, limit int) ([]policy.Organisation, error) {
	rows, err := s.db(ctx).Query(ctx,
		`SELECT `+orgColumns+` FROM organisations WHERE code > $1 ORDER BY code LIMIT $2`, after, limitArg(limit))
	if err != nil {
		return nil, fmt.Errorf("list organisations: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (policy.Organisation, error) { return scanOrg(r) })
	if err != nil {
		return nil, fmt.Errorf("list organisations: %w", translate(err))
	}
	return noEmpty(out), nil
}

const personColumns = `uid, title, given_name, middle_names, family_name, display_name, email,
	id_assurance_level, registrations, status, created_at, updated_at, integrator, test_account, reviewer`

func scanPerson(row pgx.Row) (policy.Person, error) {
	var p policy.Person
	var regs []byte
	err := row.Scan(&p.UID, &p.Title, &p.GivenName, &p.MiddleNames, &p.FamilyName, &p.DisplayName, &p.Email,
		&p.IDAssuranceLevel, &regs, &p.Status, scanTime(&p.CreatedAt), scanTime(&p.UpdatedAt),
		&p.Integrator, &p.TestAccount, &p.Reviewer)
	if err != nil {
		return policy.Person{}, err
	}
	if err := json.Unmarshal(regs, &p.Registrations); err != nil {
		return policy.Person{}, fmt.Errorf("decode registrations: %w", err)
	}
	if len(p.Registrations) == 0 {
		p.Registrations = nil
	}
	return p, nil
}

func registrationsArg(m map[string]string) ([]byte, error) {
	if len(m) == 0 {
		return []byte(`{}`), nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode registrations: %w", err)
	}
	return b, nil
}

// CreatePerson implements policy.Store.
func (s *Store) CreatePerson(ctx context.Context, p policy.Person) error {
	regs, err := registrationsArg(p.Registrations)
	if err != nil {
		return fmt.Errorf("create person %s: %w", p.UID, err)
	}
	_, err = s.db(ctx).Exec(ctx, `INSERT INTO people (`+personColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		p.UID, p.Title, p.GivenName, p.MiddleNames, p.FamilyName, p.DisplayName, p.Email,
		p.IDAssuranceLevel, regs, p.Status, nullTime(p.CreatedAt), nullTime(p.UpdatedAt),
		p.Integrator, p.TestAccount, p.Reviewer)
	if err != nil {
		return fmt.Errorf("create person %s: %w", p.UID, translate(err))
	}
	return nil
}

// GetPerson implements policy.Store.
func (s *Store) GetPerson(ctx context.Context, uid string) (policy.Person, error) {
	if ra := signInReadOf(ctx, s); ra != nil && ra.uid == uid {
		if r, ok := take(ra, ctx, &ra.person); ok {
			return r.v, r.err
		}
	}
	return getPerson(uid, s.db(ctx).QueryRow(ctx, getPersonSQL, uid))
}

const getPersonSQL = `SELECT ` + personColumns + ` FROM people WHERE uid = $1`

// getPerson reads GetPerson's answer from its row.
func getPerson(uid string, row pgx.Row) (policy.Person, error) {
	p, err := scanPerson(row)
	if err != nil {
		return policy.Person{}, fmt.Errorf("get person %s: %w", uid, translate(err))
	}
	return p, nil
}

// UpdatePerson implements policy.Store: the row is locked (FOR UPDATE)
// while fn runs, so concurrent updates never lose each other's changes.
func (s *Store) UpdatePerson(ctx context.Context, uid string, fn func(*policy.Person) error) (policy.Person, error) {
	var p policy.Person
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		p, err = scanPerson(tx.QueryRow(ctx, `SELECT `+personColumns+` FROM people WHERE uid = $1 FOR UPDATE`, uid))
		if err != nil {
			return fmt.Errorf("update person %s: %w", uid, translate(err))
		}
		if err := fn(&p); err != nil {
			return err
		}
		p.UID = uid
		regs, err := registrationsArg(p.Registrations)
		if err != nil {
			return fmt.Errorf("update person %s: %w", uid, err)
		}
		p, err = scanPerson(tx.QueryRow(ctx, `UPDATE people SET title = $2, given_name = $3, middle_names = $4,
			family_name = $5, display_name = $6, email = $7, id_assurance_level = $8,
			registrations = $9, status = $10, created_at = $11, updated_at = $12,
			integrator = $13, test_account = $14, reviewer = $15
			WHERE uid = $1 RETURNING `+personColumns,
			uid, p.Title, p.GivenName, p.MiddleNames, p.FamilyName, p.DisplayName, p.Email,
			p.IDAssuranceLevel, regs, p.Status, nullTime(p.CreatedAt), nullTime(p.UpdatedAt),
			p.Integrator, p.TestAccount, p.Reviewer))
		if err != nil {
			return fmt.Errorf("update person %s: %w", uid, translate(err))
		}
		return nil
	})
	if err != nil {
		return policy.Person{}, err
	}
	return p, nil
}

// searchPeopleSQL finds people by a LIKE pattern $1 on the expressions of
// the search indexes (migration 0018), each as its index has it, after the
// cursor $2, at most $3. It gathers the matches first and orders only
// them: with ORDER BY uid LIMIT over the whole table, PostgreSQL walked
// every person in UID order whenever it overestimated the matches, 2.4 s
// for a rare name among 1,000,000 people (docs/performance.md, round 8).
const searchPeopleSQL = `WITH found AS MATERIALIZED (
		SELECT uid FROM people WHERE lower(family_name) LIKE $1 AND uid > $2
		UNION SELECT uid FROM people WHERE lower(given_name || ' ' || family_name) LIKE $1 AND uid > $2
		UNION SELECT uid FROM people WHERE display_name <> '' AND lower(display_name) LIKE $1 AND uid > $2
		UNION SELECT uid FROM people WHERE email <> '' AND lower(email) LIKE $1 AND uid > $2)
	SELECT ` + personColumns + ` FROM (SELECT uid FROM found ORDER BY uid LIMIT $3) f JOIN people USING (uid)
	ORDER BY uid`

// SearchPeople implements policy.Store. It is planned for each search's
// key (an unnamed statement), so that each branch's estimate knows the
// prefix.
func (s *Store) SearchPeople(ctx context.Context, k string, after string, limit int) ([]policy.Person, error) {
	if k == "" {
		return nil, nil
	}
	pattern := likeEscaper.Replace(k) + "%"
	rows, err := s.db(ctx).Query(ctx, searchPeopleSQL, pgx.QueryExecModeExec, pattern, after, limitArg(limit))
	if err != nil {
		return nil, fmt.Errorf("search people: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (policy.Person, error) { return scanPerson(r) })
	if err != nil {
		return nil, fmt.Errorf("search people: %w", translate(err))
	}
	return noEmpty(out), nil
}

// likeEscaper makes a string match itself in a LIKE pattern (whose
// escape character is the backslash).
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// ListPeople implements policy.Store (limit <= 0: no limit).
func (s *Store) ListPeople(ctx context.Context, after string, limit int) ([]policy.Person, error) {
	rows, err := s.db(ctx).Query(ctx,
		`SELECT `+personColumns+` FROM people WHERE uid > $1 ORDER BY uid LIMIT $2`, after, limitArg(limit))
	if err != nil {
		return nil, fmt.Errorf("list people: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (policy.Person, error) { return scanPerson(r) })
	if err != nil {
		return nil, fmt.Errorf("list people: %w", translate(err))
	}
	return noEmpty(out), nil
}
