package postgres

import (
	"bytes"
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
//
// The exchange also deletes the PKCE row (before the code is spent) and the
// OpenID Connect row (after): two statements and two commits of their own.
// In a read-ahead context both go with the code's spend instead, in the
// statement that spends it (spendCode), so they commit or roll back with
// it: the PKCE delete is put off, and reads as done in the context at once;
// the OpenID Connect row, which fosite reads after the spend to sign the
// ID token, stays readable in the context until fosite deletes it.

type readAheadKey struct{}

// codeReadAhead holds one request's read of a code's rows.
type codeReadAhead struct {
	oidcHash []byte // oauthHash(code): the OpenID Connect row's key
	sigHash  []byte // oauthHash(the code's signature), if the caller knew it

	mu       sync.Mutex
	read     bool
	codeHash []byte               // the code and PKCE rows' key, once read
	rows     map[string]*oauthRow // by readAheadKeyOf; nil: no such row

	pkcePending bool // the PKCE row's delete waits for the code's spend
	oidcSpent   bool // the OpenID Connect row went with the code's spend
}

func readAheadKeyOf(kind string, hash []byte) string { return kind + "\x00" + string(hash) }

// WithCodeReadAhead implements store.CodeReadAheader: in the returned
// context the first look-up of the code's row or its PKCE row reads the
// code, PKCE and OpenID Connect rows of code in one statement, and later
// look-ups of those rows in the context are answered from it, until a
// write through the store drops the row it touches. With the code's
// signature (the code and PKCE rows' key), a client assertion's jti
// recorded in the context (SetClientAssertionJWT) goes with that read:
// one round trip for both.
func (s *Store) WithCodeReadAhead(ctx context.Context, code, signature string) context.Context {
	if code == "" {
		return ctx
	}
	ra := &codeReadAhead{oidcHash: oauthHash(code)}
	if signature != "" {
		ra.sigHash = oauthHash(signature)
	}
	return context.WithValue(ctx, readAheadKey{}, ra)
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
		ra.codeHash = hash
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
	res, err := s.db(ctx).Query(ctx, readAheadSQL, readAheadArgs(codeHash, oidcHash)...)
	if err != nil {
		return nil, err
	}
	return scanCodeRows(res, codeHash, oidcHash)
}

func readAheadArgs(codeHash, oidcHash []byte) []any {
	return []any{idp.TokenKindCode, codeHash, idp.TokenKindPKCE, idp.TokenKindOIDC, oidcHash}
}

// scanCodeRows reads readAheadSQL's answer, noting the absent rows.
func scanCodeRows(res pgx.Rows, codeHash, oidcHash []byte) (map[string]*oauthRow, error) {
	defer res.Close()
	rows := map[string]*oauthRow{
		readAheadKeyOf(idp.TokenKindCode, codeHash): nil,
		readAheadKeyOf(idp.TokenKindPKCE, codeHash): nil,
		readAheadKeyOf(idp.TokenKindOIDC, oidcHash): nil,
	}
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

// recordJTIReadingAhead is SetClientAssertionJWT in a context whose
// read-ahead knows its code's key and has not read yet: the jti's INSERT
// and the read of the code's rows go as one batch, one round trip and one
// implicit transaction, ahead of fosite's look-ups of the code. A replayed
// jti still reads the rows, which are then never used. handled is false
// when the caller must record the jti on its own.
func (s *Store) recordJTIReadingAhead(ctx context.Context, jtiArgs []any) (known, handled bool, err error) {
	ra, has := ctx.Value(readAheadKey{}).(*codeReadAhead)
	if !has || ra.sigHash == nil || !s.outsideTx(ctx) {
		return false, false, nil
	}
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if ra.read {
		return false, false, nil
	}
	var b pgx.Batch
	b.Queue(recordJTISQL, jtiArgs...)
	b.Queue(readAheadSQL, readAheadArgs(ra.sigHash, ra.oidcHash)...)
	br := s.pool.SendBatch(ctx, &b)
	tag, err := br.Exec()
	if err != nil {
		_ = br.Close()
		return false, true, err
	}
	res, err := br.Query()
	if err != nil {
		_ = br.Close()
		return false, true, err
	}
	rows, err := scanCodeRows(res, ra.sigHash, ra.oidcHash)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, true, err
	}
	ra.read, ra.rows, ra.codeHash = true, rows, ra.sigHash
	return tag.RowsAffected() == 0, true, nil
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

// codeReadAheadOf returns ctx's read-ahead if it has read the rows of the
// code whose hash is codeHash.
func codeReadAheadOf(ctx context.Context, codeHash []byte) (*codeReadAhead, bool) {
	ra, has := ctx.Value(readAheadKey{}).(*codeReadAhead)
	if !has {
		return nil, false
	}
	ra.mu.Lock()
	defer ra.mu.Unlock()
	return ra, ra.read && bytes.Equal(ra.codeHash, codeHash)
}

// deferPKCEDelete puts off the delete of the PKCE row of codeHash to the
// code's spend, if ctx's read-ahead holds that row; from now on it reads
// as absent in ctx. ok is false when the caller must delete it at once.
func deferPKCEDelete(ctx context.Context, codeHash []byte) bool {
	ra, ok := codeReadAheadOf(ctx, codeHash)
	if !ok {
		return false
	}
	ra.mu.Lock()
	defer ra.mu.Unlock()
	key := readAheadKeyOf(idp.TokenKindPKCE, codeHash)
	if r, held := ra.rows[key]; !held || r == nil {
		return false
	}
	ra.rows[key] = nil
	ra.pkcePending = true
	return true
}

// spendCodeSQL spends an active code ($1, $2) and, only if it did, deletes
// its PKCE row ($3, empty for none) and its OpenID Connect row ($4, $5;
// $4 empty for none), all in one statement; it answers whether the code
// was spent.
const spendCodeSQL = `WITH spent AS (
		UPDATE oauth_tokens SET active = false WHERE kind = $1 AND signature_hash = $2 AND active RETURNING 1),
	pkce AS (DELETE FROM oauth_tokens WHERE kind = $3 AND signature_hash = $2 AND EXISTS (SELECT 1 FROM spent)),
	oidc AS (DELETE FROM oauth_tokens WHERE kind = $4 AND signature_hash = $5 AND EXISTS (SELECT 1 FROM spent))
	SELECT EXISTS (SELECT 1 FROM spent)`

// spendCode spends the code of codeHash with its deferred PKCE delete and
// its OpenID Connect row, if ctx's read-ahead is of that code and either
// is to go; handled is false when the caller must spend it alone.
func (s *Store) spendCode(ctx context.Context, codeHash []byte) (spent, handled bool, err error) {
	ra, ok := codeReadAheadOf(ctx, codeHash)
	if !ok {
		return false, false, nil
	}
	ra.mu.Lock()
	defer ra.mu.Unlock()
	var pkceKind, oidcKind string
	if ra.pkcePending {
		pkceKind = idp.TokenKindPKCE
	}
	// The OpenID Connect row goes only if ctx answers its look-ups: fosite
	// reads it after the spend.
	if r := ra.rows[readAheadKeyOf(idp.TokenKindOIDC, ra.oidcHash)]; r != nil {
		oidcKind = idp.TokenKindOIDC
	}
	if pkceKind == "" && oidcKind == "" {
		return false, false, nil
	}
	if err := s.db(ctx).QueryRow(ctx, spendCodeSQL,
		idp.TokenKindCode, codeHash, pkceKind, oidcKind, ra.oidcHash).Scan(&spent); err != nil {
		return false, true, err
	}
	if spent {
		ra.pkcePending = false
		ra.oidcSpent = oidcKind != ""
	}
	return spent, true, nil
}

// spentOIDCDelete answers the delete of the OpenID Connect row of oidcHash
// if it went with the code's spend in ctx: from now on it reads as absent
// in ctx too.
func spentOIDCDelete(ctx context.Context, oidcHash []byte) bool {
	ra, has := ctx.Value(readAheadKey{}).(*codeReadAhead)
	if !has {
		return false
	}
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if !ra.oidcSpent || !bytes.Equal(ra.oidcHash, oidcHash) {
		return false
	}
	ra.rows[readAheadKeyOf(idp.TokenKindOIDC, oidcHash)] = nil
	return true
}
