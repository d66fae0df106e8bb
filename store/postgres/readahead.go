package postgres

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/nhsid/nhsid/idp"
)

// An authorization code's exchange reads the code row twice (fosite's
// handle and populate steps), its PKCE row and its OpenID Connect row:
// four look-ups of rows written together. WithCodeReadAhead lets the first
// of them read all three in one statement and the rest be answered from
// that read, for the one token request whose context carries it.

type readAheadKey struct{}

// codeReadAhead holds one request's read of a code's rows.
type codeReadAhead struct {
	oidcHash []byte // oauthHash(code): the OpenID Connect row's key

	mu   sync.Mutex
	read bool
	rows map[string]*oauthRow // by readAheadKeyOf; nil: no such row
}

func readAheadKeyOf(kind string, hash []byte) string { return kind + "\x00" + string(hash) }

// WithCodeReadAhead implements store.CodeReadAheader: in the returned
// context the first look-up of the code's row or its PKCE row reads the
// code, PKCE and OpenID Connect rows of code in one statement, and later
// look-ups of those rows in the context are answered from it, until a
// write through the store drops the row it touches.
func (s *Store) WithCodeReadAhead(ctx context.Context, code string) context.Context {
	if code == "" {
		return ctx
	}
	return context.WithValue(ctx, readAheadKey{}, &codeReadAhead{oidcHash: oauthHash(code)})
}

// readAheadSQL reads a code's rows by primary key, each arm its own look-up.
const readAheadSQL = `SELECT kind, ` + oauthCols + ` FROM oauth_tokens WHERE kind = $1 AND signature_hash = $2
	UNION ALL SELECT kind, ` + oauthCols + ` FROM oauth_tokens WHERE kind = $3 AND signature_hash = $2
	UNION ALL SELECT kind, ` + oauthCols + ` FROM oauth_tokens WHERE kind = $4 AND signature_hash = $5`

// readAhead answers the look-up of (kind, hash) from ctx's read-ahead,
// reading it first if this is the first look-up of the code or its PKCE
// row. ok is false when the read-ahead does not hold the row; the caller
// then reads it as usual.
func (s *Store) readAhead(ctx context.Context, kind string, hash []byte) (r *oauthRow, ok bool, err error) {
	ra, has := ctx.Value(readAheadKey{}).(*codeReadAhead)
	if !has {
		return nil, false, nil
	}
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if !ra.read && (kind == idp.TokenKindCode || kind == idp.TokenKindPKCE) {
		ra.read = true
		rows, err := s.readCodeRows(ctx, hash, ra.oidcHash)
		if err != nil {
			return nil, true, err
		}
		ra.rows = rows
	}
	r, ok = ra.rows[readAheadKeyOf(kind, hash)]
	if ok && r == nil {
		return nil, true, pgx.ErrNoRows
	}
	return r, ok, nil
}

// readCodeRows reads the code and PKCE rows of codeHash and the OpenID
// Connect row of oidcHash, noting the absent ones.
func (s *Store) readCodeRows(ctx context.Context, codeHash, oidcHash []byte) (map[string]*oauthRow, error) {
	rows := map[string]*oauthRow{
		readAheadKeyOf(idp.TokenKindCode, codeHash): nil,
		readAheadKeyOf(idp.TokenKindPKCE, codeHash): nil,
		readAheadKeyOf(idp.TokenKindOIDC, oidcHash): nil,
	}
	res, err := s.db(ctx).Query(ctx, readAheadSQL,
		idp.TokenKindCode, codeHash, idp.TokenKindPKCE, idp.TokenKindOIDC, oidcHash)
	if err != nil {
		return nil, err
	}
	defer res.Close()
	for res.Next() {
		var kind string
		r, err := scanOAuthRow(res, &kind)
		if err != nil {
			return nil, err
		}
		hash := codeHash
		if kind == idp.TokenKindOIDC {
			hash = oidcHash
		}
		rows[readAheadKeyOf(kind, hash)] = r
	}
	return rows, res.Err()
}

// dropReadAhead forgets (kind, hash) after a write to it, so that a later
// look-up in ctx reads the database.
func dropReadAhead(ctx context.Context, kind string, hash []byte) {
	ra, has := ctx.Value(readAheadKey{}).(*codeReadAhead)
	if !has {
		return
	}
	ra.mu.Lock()
	delete(ra.rows, readAheadKeyOf(kind, hash))
	ra.mu.Unlock()
}
