package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/store"
)

// ---- credentials ----

const credentialColumns = `id, person_uid, name, aal, aaguid, sign_count, data, created_at, last_used_at, revoked_at`

func scanCredential(row pgx.Row) (authn.Credential, error) {
	var c authn.Credential
	var count int64
	err := row.Scan(&c.ID, &c.PersonUID, &c.Name, &c.AAL, &c.AAGUID, &count, &c.Data,
		scanTime(&c.CreatedAt), scanTime(&c.LastUsedAt), scanTime(&c.RevokedAt))
	c.SignCount = uint32(count)
	return c, err
}

func credentialArgs(c authn.Credential) []any {
	return []any{c.ID, c.PersonUID, c.Name, c.AAL, c.AAGUID, int64(c.SignCount), c.Data,
		nullTime(c.CreatedAt), nullTime(c.LastUsedAt), nullTime(c.RevokedAt)}
}

const insertCredential = `INSERT INTO credentials (` + credentialColumns + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`

// CreateCredential implements authn.CredentialStore.
func (s *Store) CreateCredential(ctx context.Context, c authn.Credential) error {
	if _, err := s.db(ctx).Exec(ctx, insertCredential, credentialArgs(c)...); err != nil {
		return fmt.Errorf("create credential: %w", translate(err))
	}
	return nil
}

// GetCredential implements authn.CredentialStore.
func (s *Store) GetCredential(ctx context.Context, id []byte) (authn.Credential, error) {
	c, err := scanCredential(s.db(ctx).QueryRow(ctx, `SELECT `+credentialColumns+` FROM credentials WHERE id = $1`, id))
	if err != nil {
		return authn.Credential{}, fmt.Errorf("get credential: %w", translate(err))
	}
	return c, nil
}

// ListCredentials implements authn.CredentialStore: oldest first.
func (s *Store) ListCredentials(ctx context.Context, personUID string) ([]authn.Credential, error) {
	if ra := signInReadOf(ctx, s); ra != nil && ra.uid == personUID {
		if r, ok := take(ra, ctx, &ra.creds); ok {
			return r.v, r.err
		}
	}
	rows, err := s.db(ctx).Query(ctx, listCredentialsSQL, personUID)
	return listCredentials(rows, err)
}

const listCredentialsSQL = `SELECT ` + credentialColumns + ` FROM credentials
	WHERE person_uid = $1 ORDER BY created_at ASC NULLS FIRST, id`

// listCredentials reads ListCredentials' answer from its rows.
func listCredentials(rows pgx.Rows, err error) ([]authn.Credential, error) {
	if err != nil {
		return nil, fmt.Errorf("list credentials: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (authn.Credential, error) { return scanCredential(r) })
	if err != nil {
		return nil, fmt.Errorf("list credentials: %w", translate(err))
	}
	return noEmpty(out), nil
}

// UpdateCredential implements authn.CredentialStore (row locked while fn runs).
func (s *Store) UpdateCredential(ctx context.Context, id []byte, fn func(*authn.Credential) error) (authn.Credential, error) {
	var c authn.Credential
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		c, err = scanCredential(tx.QueryRow(ctx, `SELECT `+credentialColumns+` FROM credentials WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return fmt.Errorf("update credential: %w", translate(err))
		}
		if err := fn(&c); err != nil {
			return err
		}
		c.ID = id
		c, err = scanCredential(tx.QueryRow(ctx, `UPDATE credentials SET person_uid = $2, name = $3, aal = $4,
			aaguid = $5, sign_count = $6, data = $7, created_at = $8, last_used_at = $9, revoked_at = $10
			WHERE id = $1 RETURNING `+credentialColumns, credentialArgs(c)...))
		if err != nil {
			return fmt.Errorf("update credential: %w", translate(err))
		}
		return nil
	})
	if err != nil {
		return authn.Credential{}, err
	}
	return c, nil
}

// RecordCredentialUse implements authn.CredentialStore in one statement
// (UpdateCredential's read-modify-write took a transaction and four round
// trips per sign-in).
func (s *Store) RecordCredentialUse(ctx context.Context, id []byte, signCount uint32, data []byte, at time.Time) (authn.Credential, error) {
	c, err := scanCredential(s.db(ctx).QueryRow(ctx, recordCredentialUse+` RETURNING `+credentialColumns,
		id, int64(signCount), data, nullTime(at)))
	if err != nil {
		return authn.Credential{}, fmt.Errorf("record credential use: %w", translate(err))
	}
	return c, nil
}

// recordCredentialUse writes a sign-in's use of a credential not revoked.
const recordCredentialUse = `UPDATE credentials SET sign_count = $2, data = $3, last_used_at = $4
	WHERE id = $1 AND revoked_at IS NULL`

// QueueCredentialUse queues, in ctx's write pipeline, what
// RecordCredentialUse writes (skipping a credential revoked meanwhile);
// queued is false without a pipeline.
func (s *Store) QueueCredentialUse(ctx context.Context, id []byte, signCount uint32, data []byte, at time.Time) (bool, error) {
	p, ok := pipelineOf(ctx)
	if !ok {
		return false, nil
	}
	return true, p.queue(queuedWrite{sql: recordCredentialUse, args: []any{id, int64(signCount), data, nullTime(at)}})
}

// ---- invites ----

const inviteColumns = `code_hash, person_uid, created_by, created_at, expires_at, used_at`

func scanInvite(row pgx.Row) (authn.Invite, error) {
	var inv authn.Invite
	err := row.Scan(&inv.CodeHash, &inv.PersonUID, &inv.CreatedBy,
		scanTime(&inv.CreatedAt), scanTime(&inv.ExpiresAt), scanTime(&inv.UsedAt))
	return inv, err
}

// CreateInvite implements authn.InviteStore.
func (s *Store) CreateInvite(ctx context.Context, inv authn.Invite) error {
	_, err := s.db(ctx).Exec(ctx, `INSERT INTO invites (`+inviteColumns+`) VALUES ($1, $2, $3, $4, $5, $6)`,
		inv.CodeHash, inv.PersonUID, inv.CreatedBy, nullTime(inv.CreatedAt), nullTime(inv.ExpiresAt), nullTime(inv.UsedAt))
	if err != nil {
		return fmt.Errorf("create invite: %w", translate(err))
	}
	return nil
}

// GetInvite implements authn.InviteStore.
func (s *Store) GetInvite(ctx context.Context, codeHash []byte) (authn.Invite, error) {
	inv, err := scanInvite(s.db(ctx).QueryRow(ctx, `SELECT `+inviteColumns+` FROM invites WHERE code_hash = $1`, codeHash))
	if err != nil {
		return authn.Invite{}, fmt.Errorf("get invite: %w", translate(err))
	}
	return inv, nil
}

// EnrolWithInvite implements authn.InviteStore. The conditional UPDATE
// consumes the invite (concurrent callers queue on its row lock and then
// find it used); the credential is created for the invite's person in the
// same transaction, so a failed insert leaves the invite unused.
func (s *Store) EnrolWithInvite(ctx context.Context, codeHash []byte, now time.Time, c authn.Credential) (authn.Invite, error) {
	var inv authn.Invite
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		inv, err = scanInvite(tx.QueryRow(ctx, `UPDATE invites SET used_at = $2
			WHERE code_hash = $1 AND used_at IS NULL AND (expires_at IS NULL OR expires_at > $2)
			RETURNING `+inviteColumns, codeHash, nullTime(now)))
		if err != nil {
			return fmt.Errorf("enrol with invite: %w", translate(err))
		}
		c.PersonUID = inv.PersonUID
		if _, err := tx.Exec(ctx, insertCredential, credentialArgs(c)...); err != nil {
			return fmt.Errorf("enrol with invite: create credential: %w", translate(err))
		}
		return nil
	})
	if err != nil {
		return authn.Invite{}, err
	}
	return inv, nil
}

// ---- sessions ----

const sessionColumns = `id_hash, sid, person_uid, credential_id, aal, amr, auth_time, last_seen_at,
	idle_timeout, expires_at, user_agent, ip, selected_role_id, ended_at, end_reason`

func scanSession(row pgx.Row) (authn.Session, error) {
	var x authn.Session
	var idle pgtype.Interval
	err := row.Scan(&x.IDHash, &x.SID, &x.PersonUID, &x.CredentialID, &x.AAL, &x.AMR,
		scanTime(&x.AuthTime), scanTime(&x.LastSeenAt), &idle, scanTime(&x.ExpiresAt),
		&x.UserAgent, &x.IP, &x.SelectedRoleID, scanTime(&x.EndedAt), &x.EndReason)
	x.AMR = noEmpty(x.AMR)
	x.IdleTimeout = time.Duration(idle.Microseconds)*time.Microsecond +
		time.Duration(idle.Days)*24*time.Hour + time.Duration(idle.Months)*30*24*time.Hour
	return x, err
}

func sessionArgs(x authn.Session) []any {
	return []any{x.IDHash, x.SID, x.PersonUID, x.CredentialID, x.AAL, notNil(x.AMR),
		nullTime(x.AuthTime), nullTime(x.LastSeenAt),
		pgtype.Interval{Microseconds: x.IdleTimeout.Microseconds(), Valid: true},
		nullTime(x.ExpiresAt), x.UserAgent, x.IP, x.SelectedRoleID, nullTime(x.EndedAt), x.EndReason}
}

// CreateSession implements authn.SessionStore. Both IDHash and SID are unique.
func (s *Store) CreateSession(ctx context.Context, x authn.Session) error {
	err := s.insertNoAnswer(ctx, `INSERT INTO sessions (`+sessionColumns+`) VALUES `, 15, sessionArgs(x)...)
	if err != nil {
		return fmt.Errorf("create session: %w", translate(err))
	}
	return nil
}

// GetSession implements authn.SessionStore.
func (s *Store) GetSession(ctx context.Context, idHash []byte) (authn.Session, error) {
	x, err := scanSession(s.db(ctx).QueryRow(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE id_hash = $1`, idHash))
	if err != nil {
		return authn.Session{}, fmt.Errorf("get session: %w", translate(err))
	}
	return x, nil
}

// GetSessionBySID implements authn.SessionStore.
func (s *Store) GetSessionBySID(ctx context.Context, sid string) (authn.Session, error) {
	x, err := scanSession(s.db(ctx).QueryRow(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE sid = $1`, sid))
	if err != nil {
		return authn.Session{}, fmt.Errorf("get session by sid: %w", translate(err))
	}
	return x, nil
}

// UpdateSession implements authn.SessionStore (row locked while fn runs).
func (s *Store) UpdateSession(ctx context.Context, idHash []byte, fn func(*authn.Session) error) (authn.Session, error) {
	var x authn.Session
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		x, err = scanSession(tx.QueryRow(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE id_hash = $1 FOR UPDATE`, idHash))
		if err != nil {
			return fmt.Errorf("update session: %w", translate(err))
		}
		if err := fn(&x); err != nil {
			return err
		}
		x.IDHash = idHash
		x, err = scanSession(tx.QueryRow(ctx, `UPDATE sessions SET sid = $2, person_uid = $3, credential_id = $4,
			aal = $5, amr = $6, auth_time = $7, last_seen_at = $8, idle_timeout = $9, expires_at = $10,
			user_agent = $11, ip = $12, selected_role_id = $13, ended_at = $14, end_reason = $15
			WHERE id_hash = $1 RETURNING `+sessionColumns, sessionArgs(x)...))
		if err != nil {
			return fmt.Errorf("update session: %w", translate(err))
		}
		return nil
	})
	if err != nil {
		return authn.Session{}, err
	}
	return x, nil
}

// ListSessions implements authn.SessionStore: live sessions, newest first.
func (s *Store) ListSessions(ctx context.Context, personUID string) ([]authn.Session, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT `+sessionColumns+` FROM sessions
		WHERE person_uid = $1 AND ended_at IS NULL ORDER BY auth_time DESC NULLS LAST, id_hash`, personUID)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (authn.Session, error) { return scanSession(r) })
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", translate(err))
	}
	return noEmpty(out), nil
}

// ---- flows ----

const flowColumns = `id, binding_hash, kind, client_id, request, requested_at, min_aal, force_login,
	login_hint, resume_url, session_sid, authenticated_at, selected_role_id, expires_at,
	login_challenge, login_challenge_expires_at, login_options`

func scanFlow(row pgx.Row) (authn.Flow, error) {
	var f authn.Flow
	err := row.Scan(&f.ID, &f.BindingHash, &f.Kind, &f.ClientID, &f.Request, scanTime(&f.RequestedAt),
		&f.MinAAL, &f.ForceLogin, &f.LoginHint, &f.ResumeURL, &f.SessionSID, scanTime(&f.AuthenticatedAt),
		&f.SelectedRoleID, scanTime(&f.ExpiresAt), &f.LoginChallenge, scanTime(&f.LoginChallengeExpiresAt), &f.LoginOptions)
	return f, err
}

func flowArgs(f authn.Flow) []any {
	return []any{f.ID, f.BindingHash, f.Kind, f.ClientID, f.Request, nullTime(f.RequestedAt),
		f.MinAAL, f.ForceLogin, f.LoginHint, f.ResumeURL, f.SessionSID, nullTime(f.AuthenticatedAt),
		f.SelectedRoleID, nullTime(f.ExpiresAt), f.LoginChallenge, nullTime(f.LoginChallengeExpiresAt), f.LoginOptions}
}

// CreateFlow implements authn.FlowStore.
func (s *Store) CreateFlow(ctx context.Context, f authn.Flow) error {
	_, err := s.db(ctx).Exec(ctx, `INSERT INTO flows (`+flowColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`, flowArgs(f)...)
	if err != nil {
		return fmt.Errorf("create flow: %w", translate(err))
	}
	return nil
}

// GetFlow implements authn.FlowStore: an expired flow is not found.
func (s *Store) GetFlow(ctx context.Context, id string, now time.Time) (authn.Flow, error) {
	if ra := signInReadOf(ctx, s); ra != nil && ra.flowID == id && now.IsZero() {
		if r, ok := take(ra, ctx, &ra.flow); ok {
			return r.v, r.err
		}
	}
	return getFlow(s.db(ctx).QueryRow(ctx, getFlowSQL, id, nullTime(now)))
}

const getFlowSQL = `SELECT ` + flowColumns + ` FROM flows
	WHERE id = $1 AND ($2::timestamptz IS NULL OR expires_at IS NULL OR expires_at > $2)`

// getFlow reads GetFlow's answer from its row.
func getFlow(row pgx.Row) (authn.Flow, error) {
	f, err := scanFlow(row)
	if err != nil {
		return authn.Flow{}, fmt.Errorf("get flow: %w", translate(err))
	}
	return f, nil
}

// UpdateFlow implements authn.FlowStore (row locked while fn runs); the
// login challenge is the ceremony's, and fn's changes to it are ignored.
func (s *Store) UpdateFlow(ctx context.Context, id string, fn func(*authn.Flow) error) (authn.Flow, error) {
	var f authn.Flow
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		f, err = scanFlow(tx.QueryRow(ctx, `SELECT `+flowColumns+` FROM flows WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return fmt.Errorf("update flow: %w", translate(err))
		}
		if err := fn(&f); err != nil {
			return err
		}
		f.ID = id
		f, err = scanFlow(tx.QueryRow(ctx, `UPDATE flows SET binding_hash = $2, kind = $3, client_id = $4,
			request = $5, requested_at = $6, min_aal = $7, force_login = $8, login_hint = $9, resume_url = $10,
			session_sid = $11, authenticated_at = $12, selected_role_id = $13, expires_at = $14
			WHERE id = $1 RETURNING `+flowColumns, flowArgs(f)[:14]...)) // not the login challenge
		if err != nil {
			return fmt.Errorf("update flow: %w", translate(err))
		}
		return nil
	})
	if err != nil {
		return authn.Flow{}, err
	}
	return f, nil
}

// SetFlowLoginChallenge implements authn.FlowStore: one UPDATE, which
// also checks the flow's binding and expiry.
func (s *Store) SetFlowLoginChallenge(ctx context.Context, id string, bindingHash, data []byte, expiresAt, now time.Time) (authn.Flow, error) {
	f, err := scanFlow(s.db(ctx).QueryRow(ctx, `UPDATE flows SET login_challenge = $3,
		login_challenge_expires_at = $4, login_challenge_uses = 0, login_options = NULL
		WHERE id = $1 AND binding_hash = $2 AND (expires_at IS NULL OR expires_at > $5)
		RETURNING `+flowColumns, id, bindingHash, data, nullTime(expiresAt), nullTime(now)))
	if err != nil {
		return authn.Flow{}, fmt.Errorf("set flow login challenge: %w", translate(err))
	}
	return f, nil
}

// clearLoginChallenge forgets a flow's login challenge and the options
// made with it.
const clearLoginChallenge = `login_challenge = NULL, login_challenge_expires_at = NULL, login_options = NULL`

// SpendFlowLogin implements authn.FlowStore: one UPDATE that needs no
// answer; a second spend breaks the flows_login_challenge_once CHECK,
// which translate reports as store.ErrConflict.
func (s *Store) SpendFlowLogin(ctx context.Context, id, sid string, at time.Time) error {
	if err := s.execNoAnswer(ctx, `UPDATE flows SET session_sid = $2, authenticated_at = $3,
		`+clearLoginChallenge+`, login_challenge_uses = login_challenge_uses + 1 WHERE id = $1`,
		id, sid, nullTime(at)); err != nil {
		return fmt.Errorf("spend flow login: %w", translate(err))
	}
	return nil
}

// DropFlowLoginChallenge implements authn.FlowStore.
func (s *Store) DropFlowLoginChallenge(ctx context.Context, id string) error {
	if _, err := s.db(ctx).Exec(ctx, `UPDATE flows SET `+clearLoginChallenge+`
		WHERE id = $1 AND login_challenge IS NOT NULL`, id); err != nil {
		return fmt.Errorf("drop flow login challenge: %w", translate(err))
	}
	return nil
}

// EndFlow implements authn.FlowStore. In a write pipeline it goes with
// the pipeline (the sign-in's writes and the code it issues).
func (s *Store) EndFlow(ctx context.Context, id string, at time.Time) error {
	if err := s.execNoAnswer(ctx, `UPDATE flows SET expires_at = $2 WHERE id = $1`, id, at); err != nil {
		return fmt.Errorf("end flow: %w", translate(err))
	}
	return nil
}

// DeleteFlow implements authn.FlowStore. Deleting an unknown or already
// deleted flow is not an error. In a write pipeline it goes with the
// pipeline (the code a flow's end issues, say).
func (s *Store) DeleteFlow(ctx context.Context, id string) error {
	if err := s.execNoAnswer(ctx, `DELETE FROM flows WHERE id = $1`, id); err != nil {
		return fmt.Errorf("delete flow: %w", translate(err))
	}
	return nil
}

// ---- challenges ----

// PutChallenge implements authn.ChallengeStore; it replaces any challenge
// under the same key.
func (s *Store) PutChallenge(ctx context.Context, key string, data []byte, expiresAt time.Time) error {
	_, err := s.db(ctx).Exec(ctx, `INSERT INTO challenges (key, data, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, expires_at = EXCLUDED.expires_at`,
		key, data, nullTime(expiresAt))
	if err != nil {
		return fmt.Errorf("put challenge: %w", translate(err))
	}
	return nil
}

// TakeChallenge implements authn.ChallengeStore: DELETE ... RETURNING makes
// it atomic, and an expired challenge is removed too.
func (s *Store) TakeChallenge(ctx context.Context, key string, now time.Time) ([]byte, error) {
	var data []byte
	var exp time.Time
	err := s.db(ctx).QueryRow(ctx, `DELETE FROM challenges WHERE key = $1 RETURNING data, expires_at`, key).
		Scan(&data, scanTime(&exp))
	if err != nil {
		return nil, fmt.Errorf("take challenge: %w", translate(err))
	}
	if !exp.IsZero() && !now.Truncate(time.Microsecond).Before(exp) {
		return nil, fmt.Errorf("take challenge: expired: %w", store.ErrNotFound)
	}
	return data, nil
}
