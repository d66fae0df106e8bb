package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/ory/fosite"
	"github.com/ory/fosite/storage"

	"github.com/nhsid/nhsid/idp"
)

// fosite token storage (idp.OAuthStore) in tables oauth_tokens, oauth_par
// and oauth_jti (migrations/0002_oauth.sql). Rows are keyed by the SHA-256 of
// the token signature, after its issue time (oauthHash); the session is kept
// as JSON and decoded into the session fosite passes in, and the client is
// reloaded with GetClient.

var (
	_ idp.OAuthStore        = (*Store)(nil)
	_ storage.Transactional = (*Store)(nil)
)

// oauthHash is the key of the row of a token's signature (or, for OpenID
// Connect rows, of a code): its SHA-256, after the issue time when the
// signature carries one (idp.TokenTime), so that new rows are written next
// to each other in the primary key, not on random leaves.
func oauthHash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	if t, ok := idp.TokenTime(s); ok {
		return append(t, h[:len(h)-len(t)]...)
	}
	return h[:]
}

// oauthNow is the store's clock for expiry and grace decisions.
func oauthNow() time.Time { return time.Now().UTC() }

func oauthArgs(s []string) fosite.Arguments {
	out := make(fosite.Arguments, len(s))
	copy(out, s)
	return out
}

func oauthNullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// oauthErr maps driver errors to fosite's (and the store package's).
func oauthErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", op, fosite.ErrNotFound)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40001", "40P01":
			return fmt.Errorf("%s: %w: %s", op, fosite.ErrSerializationFailure, pgErr.Code)
		}
	}
	return fmt.Errorf("%s: %w", op, translate(err))
}

// oauthTx runs fn in the transaction carried by ctx (BeginTX), or a new one.
func (s *Store) oauthTx(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	if tx, ok := ctx.Value(txKey{}).(pgx.Tx); ok {
		return fn(tx)
	}
	if _, ok := pipelineOf(ctx); ok {
		return oauthErr(op, errPipelineAnswer)
	}
	err := pgx.BeginFunc(ctx, s.pool, fn)
	var fe *fosite.RFC6749Error
	if errors.As(err, &fe) || errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		return err // already mapped inside fn
	}
	return oauthErr(op, err)
}

// ---- transactions (fosite's storage.Transactional) ----

// BeginTX starts a transaction and returns a context carrying it; every
// store method called with that context runs inside it. Its row inserts
// wait and go together with its next statement (txqueue.go).
func (s *Store) BeginTX(ctx context.Context) (context.Context, error) {
	if _, ok := ctx.Value(txKey{}).(pgx.Tx); ok {
		return ctx, errors.New("begin tx: a transaction is already open")
	}
	if _, ok := pipelineOf(ctx); ok {
		return ctx, errors.New("begin tx: a write pipeline is open")
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return ctx, oauthErr("begin tx", err)
	}
	return context.WithValue(ctx, txKey{}, &queuedTx{conn: conn}), nil
}

// Commit commits the transaction in ctx. A serialization failure or deadlock
// is fosite.ErrSerializationFailure.
func (s *Store) Commit(ctx context.Context) error {
	tx, ok := ctx.Value(txKey{}).(pgx.Tx)
	if !ok {
		return errors.New("commit: no transaction in context")
	}
	return oauthErr("commit", tx.Commit(ctx))
}

// Rollback rolls back the transaction in ctx; rolling back a finished one is
// not an error.
func (s *Store) Rollback(ctx context.Context) error {
	tx, ok := ctx.Value(txKey{}).(pgx.Tx)
	if !ok {
		return errors.New("rollback: no transaction in context")
	}
	if err := tx.Rollback(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return oauthErr("rollback", err)
	}
	return nil
}

// ---- token rows ----

type oauthRow struct {
	requestID        string
	clientID         string
	requestedAt      time.Time
	scopes           []string
	grantedScopes    []string
	audiences        []string
	grantedAudiences []string
	form             string
	session          []byte
	active           bool
	expiresAt        *time.Time
	firstUsedAt      *time.Time
	graceUsed        bool
	revokedAt        *time.Time
}

const oauthCols = `request_id, client_id, requested_at, scopes, granted_scopes,
	audiences, granted_audiences, form_data, session, active, expires_at,
	first_used_at, grace_used, revoked_at`

// scanOAuthRow scans oauthCols, after the columns lead scans into.
func scanOAuthRow(row pgx.Row, lead ...any) (*oauthRow, error) {
	var r oauthRow
	err := row.Scan(append(lead, &r.requestID, &r.clientID, &r.requestedAt, &r.scopes, &r.grantedScopes,
		&r.audiences, &r.grantedAudiences, &r.form, &r.session, &r.active, &r.expiresAt,
		&r.firstUsedAt, &r.graceUsed, &r.revokedAt)...)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

func (r *oauthRow) expired(now time.Time) bool {
	return r.expiresAt != nil && !now.Before(*r.expiresAt)
}

// inGrace reports whether a rotated, unrevoked refresh token may still be
// used once (idp.RefreshGraceFromContext after its rotation).
func (r *oauthRow) inGrace(grace time.Duration, now time.Time) bool {
	return !r.active && r.revokedAt == nil && r.firstUsedAt != nil && !r.graceUsed &&
		grace > 0 && now.Before(r.firstUsedAt.Add(grace))
}

func (s *Store) createOAuthToken(ctx context.Context, kind, sig, accessSig string, req fosite.Requester) error {
	op := "create " + kind
	if req == nil || req.GetClient() == nil {
		return fmt.Errorf("%s: request without client", op)
	}
	if err := s.requireClient(ctx, req.GetClient().GetID()); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	sess := req.GetSession()
	raw, err := idp.EncodeSession(sess)
	if err != nil {
		return fmt.Errorf("%s: encode session: %w", op, err)
	}
	var subject string
	var expires time.Time
	if sess != nil {
		subject = sess.GetSubject()
		expires = sess.GetExpiresAt(idp.TokenKindType(kind))
	}
	dropReadAhead(ctx, kind, oauthHash(sig))
	var accessHash []byte
	if accessSig != "" {
		accessHash = oauthHash(accessSig)
	}
	err = s.insertNoAnswer(ctx, insertOAuthToken, 15,
		oauthHash(sig), kind, req.GetID(), req.GetClient().GetID(), req.GetRequestedAt().UTC(),
		[]string(oauthArgs(req.GetRequestedScopes())), []string(oauthArgs(req.GetGrantedScopes())),
		[]string(oauthArgs(req.GetRequestedAudience())), []string(oauthArgs(req.GetGrantedAudience())),
		idp.StoredTokenForm(req.GetRequestForm()), subject,
		raw, idp.SessionSID(sess, raw), oauthNullTime(expires), accessHash)
	return oauthErr(op, err)
}

// insertOAuthToken heads the INSERT of token rows (15 columns).
const insertOAuthToken = `INSERT INTO oauth_tokens (signature_hash, kind, request_id, client_id, requested_at,
	scopes, granted_scopes, audiences, granted_audiences, form_data, subject,
	session, sid, expires_at, access_signature_hash) VALUES `

// getOAuthRow reads one token row: from the request's read-ahead of a
// code's rows (readahead.go), in a group with concurrent look-ups
// (groupread.go), or on its own.
func (s *Store) getOAuthRow(ctx context.Context, kind, sig string) (*oauthRow, error) {
	hash := oauthHash(sig)
	if r, ok, err := s.readAhead(ctx, kind, hash); ok {
		if err != nil {
			return nil, oauthErr("get "+kind, err)
		}
		return r, nil
	}
	if g, ok := s.reads[kind]; ok && s.outsideTx(ctx) {
		if r, grouped, err := g.get(ctx, s.pool, hash); grouped {
			if err != nil {
				return nil, oauthErr("get "+kind, err)
			}
			return r, nil
		}
	}
	r, err := scanOAuthRow(s.db(ctx).QueryRow(ctx,
		`SELECT `+oauthCols+` FROM oauth_tokens WHERE kind = $1 AND signature_hash = $2`,
		kind, hash))
	if err != nil {
		return nil, oauthErr("get "+kind, err)
	}
	return r, nil
}

// oauthRequester rebuilds the stored request, decoding the session into
// session (which may be nil) and reloading the client.
func (s *Store) oauthRequester(ctx context.Context, r *oauthRow, session fosite.Session) (fosite.Requester, error) {
	if session != nil {
		if err := json.Unmarshal(r.session, session); err != nil {
			return nil, fmt.Errorf("decode session: %w", err)
		}
	}
	client, err := s.GetClient(ctx, r.clientID)
	if err != nil {
		return nil, fmt.Errorf("load client %q: %w", r.clientID, err)
	}
	form, err := url.ParseQuery(r.form)
	if err != nil {
		return nil, fmt.Errorf("decode form: %w", err)
	}
	return &fosite.Request{
		ID:                r.requestID,
		RequestedAt:       r.requestedAt.UTC(),
		Client:            client,
		RequestedScope:    oauthArgs(r.scopes),
		GrantedScope:      oauthArgs(r.grantedScopes),
		Form:              form,
		Session:           session,
		RequestedAudience: oauthArgs(r.audiences),
		GrantedAudience:   oauthArgs(r.grantedAudiences),
	}, nil
}

// getActiveOAuth reads a kind whose rows are either usable or gone.
func (s *Store) getActiveOAuth(ctx context.Context, kind, sig string, session fosite.Session) (fosite.Requester, error) {
	r, err := s.getOAuthRow(ctx, kind, sig)
	if err != nil {
		return nil, err
	}
	if r.expired(oauthNow()) {
		return nil, fmt.Errorf("get %s: expired: %w", kind, fosite.ErrNotFound)
	}
	return s.oauthRequester(ctx, r, session)
}

func (s *Store) deleteOAuth(ctx context.Context, kind, sig string) error {
	dropReadAhead(ctx, kind, oauthHash(sig))
	_, err := s.db(ctx).Exec(ctx,
		`DELETE FROM oauth_tokens WHERE kind = $1 AND signature_hash = $2`, kind, oauthHash(sig))
	return oauthErr("delete "+kind, err)
}

// ---- authorize codes ----

// CreateAuthorizeCodeSession stores the request behind an authorize code.
func (s *Store) CreateAuthorizeCodeSession(ctx context.Context, sig string, req fosite.Requester) error {
	return s.createOAuthToken(ctx, idp.TokenKindCode, sig, "", req)
}

// GetAuthorizeCodeSession returns the request behind a code. After
// InvalidateAuthorizeCodeSession it returns the request together with
// fosite.ErrInvalidatedAuthorizeCode, so that fosite can revoke the grant.
func (s *Store) GetAuthorizeCodeSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	r, err := s.getOAuthRow(ctx, idp.TokenKindCode, sig)
	if err != nil {
		return nil, err
	}
	if !r.active {
		req, err := s.oauthRequester(ctx, r, session)
		if err != nil {
			return nil, err
		}
		idp.NoteCodeReused(ctx)
		return req, fosite.ErrInvalidatedAuthorizeCode
	}
	if r.expired(oauthNow()) {
		return nil, fmt.Errorf("get authorize code: expired: %w", fosite.ErrNotFound)
	}
	return s.oauthRequester(ctx, r, session)
}

// InvalidateAuthorizeCodeSession marks a code used.
func (s *Store) InvalidateAuthorizeCodeSession(ctx context.Context, sig string) error {
	// "AND active": of two exchanges of one code that both read it active,
	// the second waits for the first's row lock, then finds the code spent
	// and fails (read committed re-checks the condition on the new row).
	hash := oauthHash(sig)
	spent, handled, err := s.spendCode(ctx, hash) // with its PKCE and OIDC rows (readahead.go)
	dropReadAhead(ctx, idp.TokenKindCode, hash)
	if !handled && err == nil {
		var tag pgconn.CommandTag
		tag, err = s.db(ctx).Exec(ctx,
			`UPDATE oauth_tokens SET active = false WHERE kind = $1 AND signature_hash = $2 AND active`,
			idp.TokenKindCode, hash)
		spent = tag.RowsAffected() > 0
	}
	if err != nil {
		return oauthErr("invalidate authorize code", err)
	}
	if !spent {
		var spent bool
		if err := s.db(ctx).QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM oauth_tokens WHERE kind = $1 AND signature_hash = $2)`,
			idp.TokenKindCode, oauthHash(sig)).Scan(&spent); err != nil {
			return oauthErr("invalidate authorize code", err)
		}
		if spent {
			return fmt.Errorf("invalidate authorize code: %w", fosite.ErrInvalidatedAuthorizeCode)
		}
		return fmt.Errorf("invalidate authorize code: %w", fosite.ErrNotFound)
	}
	return nil
}

// ---- PKCE and OpenID Connect (keyed by the authorize code) ----

// CreatePKCERequestSession stores the PKCE challenge of an authorize code.
func (s *Store) CreatePKCERequestSession(ctx context.Context, sig string, req fosite.Requester) error {
	return s.createOAuthToken(ctx, idp.TokenKindPKCE, sig, "", req)
}

// GetPKCERequestSession returns the PKCE request, or fosite.ErrNotFound.
func (s *Store) GetPKCERequestSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	return s.getActiveOAuth(ctx, idp.TokenKindPKCE, sig, session)
}

// DeletePKCERequestSession removes the PKCE request.
func (s *Store) DeletePKCERequestSession(ctx context.Context, sig string) error {
	if deferPKCEDelete(ctx, oauthHash(sig)) { // to the code's spend (readahead.go)
		return nil
	}
	return s.deleteOAuth(ctx, idp.TokenKindPKCE, sig)
}

// CreateOpenIDConnectSession stores the OIDC request of an authorize code.
func (s *Store) CreateOpenIDConnectSession(ctx context.Context, code string, req fosite.Requester) error {
	return s.createOAuthToken(ctx, idp.TokenKindOIDC, code, "", req)
}

// GetOpenIDConnectSession returns the OIDC request, decoding its session
// into req's, or fosite.ErrNotFound.
func (s *Store) GetOpenIDConnectSession(ctx context.Context, code string, req fosite.Requester) (fosite.Requester, error) {
	var sess fosite.Session
	if req != nil {
		sess = req.GetSession()
	}
	return s.getActiveOAuth(ctx, idp.TokenKindOIDC, code, sess)
}

// DeleteOpenIDConnectSession removes the OIDC request.
func (s *Store) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	if spentOIDCDelete(ctx, oauthHash(code)) { // went with the code's spend (readahead.go)
		return nil
	}
	return s.deleteOAuth(ctx, idp.TokenKindOIDC, code)
}

// ---- access tokens ----

// CreateAccessTokenSession stores an access token's request.
func (s *Store) CreateAccessTokenSession(ctx context.Context, sig string, req fosite.Requester) error {
	return s.createOAuthToken(ctx, idp.TokenKindAccess, sig, "", req)
}

// GetAccessTokenSession returns an access token's request, or
// fosite.ErrNotFound when it is unknown, revoked or expired.
func (s *Store) GetAccessTokenSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	return s.getActiveOAuth(ctx, idp.TokenKindAccess, sig, session)
}

// DeleteAccessTokenSession removes an access token.
func (s *Store) DeleteAccessTokenSession(ctx context.Context, sig string) error {
	return s.deleteOAuth(ctx, idp.TokenKindAccess, sig)
}

// RevokeAccessToken removes every access token of a grant.
func (s *Store) RevokeAccessToken(ctx context.Context, requestID string) error {
	_, err := s.db(ctx).Exec(ctx, revokeAccessByRequestSQL, requestID)
	return oauthErr("revoke access tokens", err)
}

// The statements that find a grant's tokens by request id or session id
// name the kind as a literal, and the session id's statements say it is
// not empty: the indexes they use hold only access and refresh tokens
// with a session id (migration 0021), which a prepared statement's
// generic plan can know only from the statement's own text.
const (
	revokeAccessByRequestSQL  = `DELETE FROM oauth_tokens WHERE request_id = $1 AND kind = '` + idp.TokenKindAccess + `'`
	revokeRefreshByRequestSQL = `UPDATE oauth_tokens SET active = false, revoked_at = $2
		WHERE request_id = $1 AND kind = '` + idp.TokenKindRefresh + `' AND revoked_at IS NULL`
	revokeAccessBySessionSQL  = `DELETE FROM oauth_tokens WHERE sid = $1 AND sid <> '' AND kind = '` + idp.TokenKindAccess + `'`
	revokeRefreshBySessionSQL = `WITH revoked AS (
			UPDATE oauth_tokens t SET active = false, revoked_at = $2
			FROM oauth_tokens old
			WHERE t.sid = $1 AND t.sid <> '' AND t.kind = '` + idp.TokenKindRefresh + `' AND t.revoked_at IS NULL
			  AND old.kind = t.kind AND old.signature_hash = t.signature_hash
			RETURNING old.active
		)
		SELECT count(*) FILTER (WHERE active) FROM revoked`
)

// ---- refresh tokens ----

// CreateRefreshTokenSession stores a refresh token's request and the access
// token issued with it.
func (s *Store) CreateRefreshTokenSession(ctx context.Context, sig, accessSig string, req fosite.Requester) error {
	return s.createOAuthToken(ctx, idp.TokenKindRefresh, sig, accessSig, req)
}

// GetRefreshTokenSession returns a refresh token's request. A rotated or
// revoked token comes back with fosite.ErrInactiveToken and its request
// (fosite then revokes the grant), except within the grace period after
// rotation, when it is returned as active until its one grace use is spent
// by RotateRefreshToken. Reading does not spend the grace, so introspection
// and revocation have no side effect.
func (s *Store) GetRefreshTokenSession(ctx context.Context, sig string, session fosite.Session) (fosite.Requester, error) {
	r, err := s.getOAuthRow(ctx, idp.TokenKindRefresh, sig)
	if err != nil {
		return nil, err
	}
	now := oauthNow()
	if !r.active && !r.inGrace(idp.RefreshGraceFromContext(ctx), now) {
		req, err := s.oauthRequester(ctx, r, session)
		if err != nil {
			return nil, err
		}
		return req, fosite.ErrInactiveToken
	}
	if r.expired(now) {
		return nil, fmt.Errorf("get refresh: expired: %w", fosite.ErrNotFound)
	}
	return s.oauthRequester(ctx, r, session)
}

// DeleteRefreshTokenSession removes a refresh token.
func (s *Store) DeleteRefreshTokenSession(ctx context.Context, sig string) error {
	return s.deleteOAuth(ctx, idp.TokenKindRefresh, sig)
}

// RotateRefreshToken retires a refresh token that has just been exchanged,
// and removes the access token issued with it. Rotating an already rotated
// token spends its one grace use (if still in the grace period); otherwise
// it fails with fosite.ErrInactiveToken, which fosite reports as a retry.
// The row is locked, so of two concurrent rotations exactly one wins.
func (s *Store) RotateRefreshToken(ctx context.Context, requestID, sig string) error {
	const op = "rotate refresh"
	now := oauthNow()
	h := oauthHash(sig)
	return s.oauthTx(ctx, op, func(tx pgx.Tx) error {
		// The usual case in one statement: the grant's active token is
		// used up and the access token issued with it deleted. Under a
		// concurrent rotation the UPDATE waits for the row and then finds
		// it inactive, and the look-up below decides (grace or not).
		// "(request_id = $3) IS TRUE" is request_id = $3 that no index can
		// serve: the planner otherwise walks the (request_id, kind) index,
		// through every token the grant ever rotated, instead of the
		// primary key.
		var rotated bool
		err := tx.QueryRow(ctx, `
			WITH used AS (
				UPDATE oauth_tokens SET active = false, first_used_at = $4
				WHERE kind = $1 AND signature_hash = $2 AND (request_id = $3) IS TRUE AND active
				RETURNING access_signature_hash),
			gone AS (
				DELETE FROM oauth_tokens WHERE kind = $5
				AND signature_hash IN (SELECT access_signature_hash FROM used))
			SELECT EXISTS (SELECT 1 FROM used)`,
			idp.TokenKindRefresh, h, requestID, now, idp.TokenKindAccess).Scan(&rotated)
		if err != nil {
			return oauthErr(op, err)
		}
		if rotated {
			return nil
		}
		// Not rotated: another grant's token, or one already used up.
		var (
			rowRequest  string
			graceUsed   bool
			firstUsedAt *time.Time
			revokedAt   *time.Time
		)
		err = tx.QueryRow(ctx, `
			SELECT request_id, grace_used, first_used_at, revoked_at
			FROM oauth_tokens WHERE kind = $1 AND signature_hash = $2 FOR UPDATE`,
			idp.TokenKindRefresh, h).Scan(&rowRequest, &graceUsed, &firstUsedAt, &revokedAt)
		if err != nil {
			return oauthErr(op, err)
		}
		if rowRequest != requestID {
			return fmt.Errorf("%s: other request: %w", op, fosite.ErrNotFound)
		}
		r := oauthRow{graceUsed: graceUsed, firstUsedAt: firstUsedAt, revokedAt: revokedAt}
		if r.inGrace(idp.RefreshGraceFromContext(ctx), now) {
			_, err := tx.Exec(ctx, `UPDATE oauth_tokens SET grace_used = true
				WHERE kind = $1 AND signature_hash = $2`, idp.TokenKindRefresh, h)
			return oauthErr(op, err)
		}
		return fmt.Errorf("%s: %w", op, fosite.ErrInactiveToken)
	})
}

// RevokeRefreshToken revokes every refresh token of a grant (no grace).
func (s *Store) RevokeRefreshToken(ctx context.Context, requestID string) error {
	_, err := s.db(ctx).Exec(ctx, revokeRefreshByRequestSQL, requestID, oauthNow())
	return oauthErr("revoke refresh tokens", err)
}

// RevokeBySession revokes every access and refresh token whose session
// carries sid, and returns how many usable tokens it revoked.
func (s *Store) RevokeBySession(ctx context.Context, sid string) (int, error) {
	if sid == "" {
		return 0, nil
	}
	const op = "revoke by session"
	var n int
	err := s.oauthTx(ctx, op, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, revokeAccessBySessionSQL, sid)
		if err != nil {
			return oauthErr(op, err)
		}
		n = int(tag.RowsAffected())
		var refreshed int
		err = tx.QueryRow(ctx, revokeRefreshBySessionSQL, sid, oauthNow()).Scan(&refreshed)
		if err != nil {
			return oauthErr(op, err)
		}
		n += refreshed
		return nil
	})
	return n, err
}

// ---- client assertion replay (jti) ----

// ClientAssertionJWTValid returns fosite.ErrJTIKnown if jti was seen and has
// not expired.
func (s *Store) ClientAssertionJWTValid(ctx context.Context, jti string) error {
	var known bool
	err := s.db(ctx).QueryRow(ctx,
		`SELECT EXISTS (SELECT 1 FROM oauth_jti WHERE jti_hash = $1 AND expires_at > $2)`,
		oauthHash(jti), oauthNow()).Scan(&known)
	if err != nil {
		return oauthErr("check jti", err)
	}
	if known {
		return fosite.ErrJTIKnown
	}
	return nil
}

// SetClientAssertionJWT records jti until exp; a jti still recorded gives
// fosite.ErrJTIKnown, an expired one is taken over. One statement, no
// transaction: expired rows are left to the GC purge (PurgeExpiredOAuth),
// because deleting them here made concurrent token requests queue on the
// same expired rows' locks (docs/performance.md).
// In a token request's code read-ahead it goes with the read of the code
// (recordJTIReadingAhead).
func (s *Store) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	const op = "record jti"
	args := []any{oauthHash(jti), exp.UTC(), oauthNow()}
	known, handled, err := s.recordJTIReadingAhead(ctx, args)
	if !handled {
		var tag pgconn.CommandTag
		tag, err = s.db(ctx).Exec(ctx, recordJTISQL, args...)
		known = tag.RowsAffected() == 0
	}
	if err != nil {
		return oauthErr(op, err)
	}
	if known {
		return fosite.ErrJTIKnown
	}
	return nil
}

// recordJTISQL records a jti ($1) until $2 unless it is recorded and
// unexpired at $3: no row affected means a replay.
const recordJTISQL = `INSERT INTO oauth_jti (jti_hash, expires_at) VALUES ($1, $2)
	ON CONFLICT (jti_hash) DO UPDATE SET expires_at = EXCLUDED.expires_at
	WHERE oauth_jti.expires_at <= $3`

// ---- pushed authorization requests ----

// CreatePARSession stores a pushed authorization request under its
// request_uri (hashed). Client credentials in its form are dropped.
func (s *Store) CreatePARSession(ctx context.Context, requestURI string, ar fosite.AuthorizeRequester) error {
	const op = "create par"
	if ar == nil || ar.GetClient() == nil {
		return fmt.Errorf("%s: request without client", op)
	}
	if err := s.requireClient(ctx, ar.GetClient().GetID()); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	form := url.Values{}
	for k, v := range ar.GetRequestForm() {
		form[k] = append([]string(nil), v...)
	}
	for _, k := range idp.PARSecretParams {
		form.Del(k)
	}
	var redirect string
	if u := ar.GetRedirectURI(); u != nil {
		redirect = u.String()
	}
	var expires time.Time
	if sess := ar.GetSession(); sess != nil {
		expires = sess.GetExpiresAt(fosite.PushedAuthorizeRequestContext)
	}
	if expires.IsZero() {
		expires = oauthNow().Add(idp.DefaultPARLifespan)
	}
	_, err := s.db(ctx).Exec(ctx, `
		INSERT INTO oauth_par (request_uri_hash, request_id, client_id, requested_at, scopes,
			audiences, form_data, response_types, redirect_uri, state, response_mode,
			default_response_mode, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		oauthHash(requestURI), ar.GetID(), ar.GetClient().GetID(), ar.GetRequestedAt().UTC(),
		[]string(oauthArgs(ar.GetRequestedScopes())), []string(oauthArgs(ar.GetRequestedAudience())),
		form.Encode(), []string(oauthArgs(ar.GetResponseTypes())), redirect, ar.GetState(),
		string(ar.GetResponseMode()), string(ar.GetDefaultResponseMode()), expires.UTC())
	return oauthErr(op, err)
}

// GetPARSession rebuilds a pushed authorization request (without a
// session: the caller sets one in NewAuthorizeResponse), or returns
// fosite.ErrNotFound when it is unknown or expired.
func (s *Store) GetPARSession(ctx context.Context, requestURI string) (fosite.AuthorizeRequester, error) {
	const op = "get par"
	var (
		requestID, clientID, form, redirect, state, mode, defMode string
		requestedAt, expiresAt                                    time.Time
		scopes, audiences, responseTypes                          []string
	)
	err := s.db(ctx).QueryRow(ctx, `
		SELECT request_id, client_id, requested_at, scopes, audiences, form_data,
			response_types, redirect_uri, state, response_mode, default_response_mode, expires_at
		FROM oauth_par WHERE request_uri_hash = $1`, oauthHash(requestURI)).Scan(
		&requestID, &clientID, &requestedAt, &scopes, &audiences, &form,
		&responseTypes, &redirect, &state, &mode, &defMode, &expiresAt)
	if err != nil {
		return nil, oauthErr(op, err)
	}
	if !oauthNow().Before(expiresAt) {
		return nil, fmt.Errorf("%s: expired: %w", op, fosite.ErrNotFound)
	}
	client, err := s.GetClient(ctx, clientID)
	if err != nil {
		return nil, fmt.Errorf("%s: load client %q: %w", op, clientID, err)
	}
	ar := fosite.NewAuthorizeRequest()
	ar.ID = requestID
	ar.RequestedAt = requestedAt.UTC()
	ar.Client = client
	ar.RequestedScope = oauthArgs(scopes)
	ar.RequestedAudience = oauthArgs(audiences)
	ar.ResponseTypes = oauthArgs(responseTypes)
	ar.State = state
	ar.ResponseMode = fosite.ResponseModeType(mode)
	ar.DefaultResponseMode = fosite.ResponseModeType(defMode)
	if ar.Form, err = url.ParseQuery(form); err != nil {
		return nil, fmt.Errorf("%s: decode form: %w", op, err)
	}
	if redirect != "" {
		if ar.RedirectURI, err = url.Parse(redirect); err != nil {
			return nil, fmt.Errorf("%s: redirect uri: %w", op, err)
		}
	}
	return ar, nil
}

// DeletePARSession removes a pushed authorization request.
func (s *Store) DeletePARSession(ctx context.Context, requestURI string) error {
	_, err := s.db(ctx).Exec(ctx, `DELETE FROM oauth_par WHERE request_uri_hash = $1`, oauthHash(requestURI))
	return oauthErr("delete par", err)
}

// PurgeExpiredOAuth drops codes, tokens, PAR requests and jtis that expired
// before the given time (for the GC job; safe on several replicas); refresh
// tokens without an expiry stay. It deletes in batches of gcBatch rows, each
// its own short transaction: one DELETE of millions of expired rows would
// hold a snapshot that stalls the audit sealer's watermark and write its
// WAL in one burst. It returns how many rows it removed.
func (s *Store) PurgeExpiredOAuth(ctx context.Context, before time.Time) (int, error) {
	var n int64
	for _, q := range []string{
		`DELETE FROM oauth_tokens WHERE ctid IN (SELECT ctid FROM oauth_tokens WHERE expires_at < $1 LIMIT $2)`,
		`DELETE FROM oauth_par WHERE ctid IN (SELECT ctid FROM oauth_par WHERE expires_at < $1 LIMIT $2)`,
		`DELETE FROM oauth_jti WHERE ctid IN (SELECT ctid FROM oauth_jti WHERE expires_at < $1 LIMIT $2)`,
	} {
		for {
			tag, err := s.db(ctx).Exec(ctx, q, before.UTC(), gcBatch)
			if err != nil {
				return int(n), oauthErr("purge expired oauth", err)
			}
			n += tag.RowsAffected()
			if tag.RowsAffected() < gcBatch {
				break
			}
			if err := ctx.Err(); err != nil {
				return int(n), err
			}
		}
	}
	return int(n), nil
}
