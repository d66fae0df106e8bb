package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/ory/fosite"

	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/store"
)

// A client is stored as its JSON metadata plus columns for what JSON leaves
// out (secret hashes) or what queries need (id, disabled, timestamps).

const clientColumns = `id, metadata, secret_hash, rotated_secret_hashes, disabled, created_at, updated_at`

func scanClient(row pgx.Row) (*idp.Client, error) {
	r, err := scanClientRow(row)
	if err != nil {
		return nil, err
	}
	return r.client()
}

// clientRow is a clients row as scanned, before decoding.
type clientRow struct {
	id      string
	meta    []byte
	c       idp.Client // SecretHash, Disabled, CreatedAt, UpdatedAt
	rotated [][]byte
}

func scanClientRow(row pgx.Row) (*clientRow, error) {
	var r clientRow
	if err := row.Scan(&r.id, &r.meta, &r.c.SecretHash, &r.rotated, &r.c.Disabled,
		scanTime(&r.c.CreatedAt), scanTime(&r.c.UpdatedAt)); err != nil {
		return nil, err
	}
	return &r, nil
}

// client decodes r into a new client that shares nothing with r.
func (r *clientRow) client() (*idp.Client, error) {
	out := new(idp.Client)
	if err := json.Unmarshal(r.meta, out); err != nil {
		return nil, fmt.Errorf("decode client metadata: %w", err)
	}
	out.ID = r.id
	out.SecretHash = bytes.Clone(r.c.SecretHash)
	for _, h := range noEmpty(r.rotated) {
		out.RotatedSecretHashes = append(out.RotatedSecretHashes, bytes.Clone(h))
	}
	out.Disabled = r.c.Disabled
	out.CreatedAt = r.c.CreatedAt
	out.UpdatedAt = r.c.UpdatedAt
	return out, nil
}

func clientArgs(c *idp.Client) ([]any, error) {
	meta, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode client metadata: %w", err)
	}
	return []any{c.ID, meta, c.SecretHash, notNil(c.RotatedSecretHashes), c.Disabled,
		nullTime(c.CreatedAt), nullTime(c.UpdatedAt)}, nil
}

// clientNotFound is both fosite.ErrNotFound (fosite's ClientManager
// contract) and store.ErrNotFound.
func clientNotFound(id string) error {
	return fmt.Errorf("get client %q: %w (%w)", id, fosite.ErrNotFound, store.ErrNotFound)
}

// CreateClient implements idp.ClientStore.
func (s *Store) CreateClient(ctx context.Context, c *idp.Client) error {
	if c == nil {
		return errors.New("create client: nil client")
	}
	args, err := clientArgs(c)
	if err != nil {
		return fmt.Errorf("create client %s: %w", c.ID, err)
	}
	s.clients.forget(c.ID)
	_, err = s.db(ctx).Exec(ctx, `INSERT INTO clients (`+clientColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`, args...)
	if err != nil {
		return fmt.Errorf("create client %s: %w", c.ID, translate(err))
	}
	return nil
}

// GetClient implements idp.ClientStore and fosite.ClientManager: it returns
// a *idp.Client, or an error that is both fosite.ErrNotFound and
// store.ErrNotFound.
func (s *Store) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	if c := s.clients.get(id); c != nil {
		return c, nil
	}
	q := s.db(ctx)
	if _, ok := pipelineOf(ctx); ok {
		q = s.pool // the pipeline never writes clients: read them now
	}
	c, err := scanClient(q.QueryRow(ctx, `SELECT `+clientColumns+` FROM clients WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, clientNotFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("get client %q: %w", id, translate(err))
	}
	s.clients.put(c)
	return c, nil
}

// requireClient fails unless client id exists; token and PAR rows use it
// in place of a foreign key (migration 0013). A cached client needs no
// copy and no query.
func (s *Store) requireClient(ctx context.Context, id string) error {
	if s.clients.has(id) {
		return nil
	}
	_, err := s.GetClient(ctx, id)
	return err
}

func (s *Store) getClient(ctx context.Context, q querier, id, lock string) (*idp.Client, error) {
	c, err := scanClient(q.QueryRow(ctx, `SELECT `+clientColumns+` FROM clients WHERE id = $1 `+lock, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, clientNotFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("get client %q: %w", id, translate(err))
	}
	return c, nil
}

// UpdateClient implements idp.ClientStore (row locked while fn runs).
func (s *Store) UpdateClient(ctx context.Context, id string, fn func(*idp.Client) error) (*idp.Client, error) {
	s.clients.forget(id)
	defer s.clients.forget(id)
	var c *idp.Client
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		c, err = s.getClient(ctx, tx, id, "FOR UPDATE")
		if err != nil {
			return fmt.Errorf("update client: %w", err)
		}
		if err := fn(c); err != nil {
			return err
		}
		c.ID = id
		args, err := clientArgs(c)
		if err != nil {
			return fmt.Errorf("update client %s: %w", id, err)
		}
		c, err = scanClient(tx.QueryRow(ctx, `UPDATE clients SET metadata = $2, secret_hash = $3,
			rotated_secret_hashes = $4, disabled = $5, created_at = $6, updated_at = $7
			WHERE id = $1 RETURNING `+clientColumns, args...))
		if err != nil {
			return fmt.Errorf("update client %s: %w", id, translate(err))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ListClients implements idp.ClientStore: ordered by ID after the cursor
// (limit <= 0: no limit).
func (s *Store) ListClients(ctx context.Context, after string, limit int) ([]*idp.Client, error) {
	rows, err := s.db(ctx).Query(ctx,
		`SELECT `+clientColumns+` FROM clients WHERE id > $1 ORDER BY id LIMIT $2`, after, limitArg(limit))
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*idp.Client, error) { return scanClient(r) })
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", translate(err))
	}
	return noEmpty(out), nil
}
