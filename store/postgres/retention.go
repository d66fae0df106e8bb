package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nhsid/nhsid/audit"
)

var _ audit.Retainer = (*Store)(nil)

// AuditBoundary implements audit.Retainer.
func (s *Store) AuditBoundary(ctx context.Context) (audit.Boundary, error) {
	var b audit.Boundary
	err := s.db(ctx).QueryRow(ctx, `SELECT pos, seq, hash, cut FROM audit_retention ORDER BY pos DESC LIMIT 1`).
		Scan(&b.Pos, &b.Seq, &b.Hash, &b.Time)
	if errors.Is(err, pgx.ErrNoRows) {
		return audit.Boundary{Hash: audit.GenesisHash}, nil
	}
	if err != nil {
		return audit.Boundary{}, fmt.Errorf("audit boundary: %w", translate(err))
	}
	b.Time = b.Time.UTC()
	return b, nil
}

// PurgeAudit implements audit.Retainer. It needs DELETE on the audit
// tables: run it as the retention role (nhsid_grant_retention_role,
// migration 0010), never as the serving role, which is refused. The seal
// lock is held so no sealer runs meanwhile.
func (s *Store) PurgeAudit(ctx context.Context, b audit.Boundary, e audit.Event) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, sealLockKey); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		var cur, headPos int64
		var hash []byte
		var seq *int64
		err := tx.QueryRow(ctx, `
			SELECT coalesce((SELECT pos FROM audit_retention ORDER BY pos DESC LIMIT 1), 0),
			       coalesce((SELECT pos FROM audit_seals ORDER BY pos DESC LIMIT 1), 0),
			       (SELECT hash FROM audit_seals WHERE pos = $1), (SELECT seq FROM audit_seals WHERE pos = $1)`, b.Pos).
			Scan(&cur, &headPos, &hash, &seq)
		if err != nil {
			return fmt.Errorf("bounds: %w", err)
		}
		switch {
		case b.Pos <= cur:
			return fmt.Errorf("position %d is already purged (boundary %d)", b.Pos, cur)
		case b.Pos >= headPos:
			return fmt.Errorf("position %d is not below the chain head %d", b.Pos, headPos)
		case seq == nil || !bytes.Equal(hash, b.Hash):
			return fmt.Errorf("the chain hash at position %d does not match the archive", b.Pos)
		}
		tag, err := tx.Exec(ctx, `DELETE FROM audit_events WHERE seq IN (SELECT seq FROM audit_seals WHERE pos > $1 AND pos <= $2)`, cur, b.Pos)
		if err != nil {
			return fmt.Errorf("delete records: %w", err)
		}
		n = tag.RowsAffected()
		if _, err := tx.Exec(ctx, `DELETE FROM audit_seals WHERE pos > $1 AND pos <= $2`, cur, b.Pos); err != nil {
			return fmt.Errorf("delete seals: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO audit_retention (pos, seq, hash, cut) VALUES ($1, $2, $3, $4)`,
			b.Pos, *seq, b.Hash, b.Time.UTC()); err != nil {
			return fmt.Errorf("boundary: %w", err)
		}
		if _, err := s.AppendAudit(context.WithValue(ctx, txKey{}, tx), []audit.Event{e}); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("purge audit: %w", translate(err))
	}
	return n, nil
}

// GrantRetentionRole grants role (which must exist) SELECT, INSERT and
// DELETE on the audit tables, through nhsid_grant_retention_role of
// migration 0010. Run it as the schema owner after each migration.
func GrantRetentionRole(ctx context.Context, pool *pgxpool.Pool, role string) error {
	if role == "" {
		return errors.New("grant retention role: empty role")
	}
	if _, err := pool.Exec(ctx, `SELECT nhsid_grant_retention_role($1)`, role); err != nil {
		return fmt.Errorf("grant retention role %s: %w", role, translate(err))
	}
	return nil
}
