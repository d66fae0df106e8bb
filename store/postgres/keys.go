package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/nhsid/nhsid/idp"
)

const keyColumns = `kid, alg, private_encrypted, public_jwk, created_at, active_at, retired_at, expires_at, revoked_at`

func scanKey(row pgx.Row) (idp.SigningKey, error) {
	var k idp.SigningKey
	err := row.Scan(&k.KID, &k.Alg, &k.PrivateEncrypted, &k.PublicJWK, scanTime(&k.CreatedAt),
		scanTime(&k.ActiveAt), scanTime(&k.RetiredAt), scanTime(&k.ExpiresAt), scanTime(&k.RevokedAt))
	return k, err
}

func keyArgs(k idp.SigningKey) []any {
	return []any{k.KID, k.Alg, k.PrivateEncrypted, k.PublicJWK, nullTime(k.CreatedAt),
		nullTime(k.ActiveAt), nullTime(k.RetiredAt), nullTime(k.ExpiresAt), nullTime(k.RevokedAt)}
}

// CreateKey implements idp.KeyStore.
func (s *Store) CreateKey(ctx context.Context, k idp.SigningKey) error {
	_, err := s.db(ctx).Exec(ctx, `INSERT INTO signing_keys (`+keyColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, keyArgs(k)...)
	if err != nil {
		return fmt.Errorf("create key %s: %w", k.KID, translate(err))
	}
	return nil
}

// ListKeys implements idp.KeyStore: oldest first.
func (s *Store) ListKeys(ctx context.Context) ([]idp.SigningKey, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT `+keyColumns+` FROM signing_keys ORDER BY created_at ASC NULLS FIRST, kid`)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (idp.SigningKey, error) { return scanKey(r) })
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", translate(err))
	}
	return out, nil
}

// UpdateKey implements idp.KeyStore (row locked while fn runs).
func (s *Store) UpdateKey(ctx context.Context, kid string, fn func(*idp.SigningKey) error) (idp.SigningKey, error) {
	var k idp.SigningKey
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		k, err = scanKey(tx.QueryRow(ctx, `SELECT `+keyColumns+` FROM signing_keys WHERE kid = $1 FOR UPDATE`, kid))
		if err != nil {
			return fmt.Errorf("update key %s: %w", kid, translate(err))
		}
		if err := fn(&k); err != nil {
			return err
		}
		k.KID = kid
		k, err = scanKey(tx.QueryRow(ctx, `UPDATE signing_keys SET alg = $2, private_encrypted = $3,
			public_jwk = $4, created_at = $5, active_at = $6, retired_at = $7, expires_at = $8, revoked_at = $9
			WHERE kid = $1 RETURNING `+keyColumns, keyArgs(k)...))
		if err != nil {
			return fmt.Errorf("update key %s: %w", kid, translate(err))
		}
		return nil
	})
	if err != nil {
		return idp.SigningKey{}, err
	}
	return k, nil
}
