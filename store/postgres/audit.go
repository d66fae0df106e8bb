package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nhsid/nhsid/audit"
)

var _ audit.Store = (*Store)(nil)

// sealLockKey is the transaction advisory lock held by a sealing round, so
// one replica seals at a time.
const sealLockKey int64 = 0x6e687369_64736561 // "nhsidsea"

const auditCols = `seq, time, type, outcome, actor, subject, client, org, role_id, session_hash, request_id, ip, user_agent, detail`

// insertAuditEvents heads the INSERT of audit records (auditWidth columns).
const (
	insertAuditEvents = `INSERT INTO audit_events (time, type, outcome, actor, subject, client, org, role_id, session_hash, request_id, ip, user_agent, detail) VALUES `
	auditWidth        = 13
)

// AppendAudit implements audit.Store: one INSERT for all events, in the
// transaction or write pipeline carried by ctx if any (in a pipeline or a
// BeginTX transaction the returned events have no Seq yet).
func (s *Store) AppendAudit(ctx context.Context, events []audit.Event) ([]audit.Event, error) {
	if len(events) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(events)*auditWidth)
	for _, e := range events {
		var detail *string
		if len(e.RawDetail) > 0 {
			d := string(e.RawDetail)
			detail = &d
		}
		args = append(args, e.Time.UTC(), string(e.Type), string(e.Outcome), e.Actor, e.Subject, e.Client, e.Org,
			e.RoleID, e.SessionHash, e.RequestID, e.IP, e.UserAgent, detail)
	}
	out := make([]audit.Event, len(events))
	for i := range events {
		out[i] = events[i]
		out[i].Time = events[i].Time.UTC()
	}
	_, piped := pipelineOf(ctx)
	if _, queued := queuedTxOf(ctx); piped || queued {
		// Queued: the events commit with the rest of the pipeline or
		// transaction, and their sequence numbers are not known yet.
		if err := s.insertNoAnswer(ctx, insertAuditEvents, auditWidth, args...); err != nil {
			return nil, fmt.Errorf("append audit: %w", err)
		}
		return out, nil
	}
	rows, err := s.db(ctx).Query(ctx, insertSQL(insertAuditEvents, auditWidth, len(events))+" RETURNING seq", args...)
	if err != nil {
		return nil, fmt.Errorf("append audit: %w", translate(err))
	}
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("append audit: %w", translate(err))
	}
	for i := range out {
		out[i].Seq = seqs[i]
	}
	return out, nil
}

func scanAuditEvent(row pgx.Row, e *audit.Event) error {
	var detail *string
	var typ, outcome string
	if err := row.Scan(&e.Seq, &e.Time, &typ, &outcome, &e.Actor, &e.Subject, &e.Client, &e.Org, &e.RoleID,
		&e.SessionHash, &e.RequestID, &e.IP, &e.UserAgent, &detail); err != nil {
		return err
	}
	e.Type, e.Outcome = audit.Type(typ), audit.Outcome(outcome)
	e.Time = e.Time.UTC()
	if detail != nil && *detail != "" {
		e.RawDetail = []byte(*detail)
		_ = json.Unmarshal(e.RawDetail, &e.Detail)
	}
	return nil
}

// QueryAudit implements audit.Store.
func (s *Store) QueryAudit(ctx context.Context, q audit.Query) (audit.Page, error) {
	q = q.Normalised()
	if q.Person != "" && q.Client != "" && len(q.Types) == 1 && q.Types[0] == audit.ClientFirstUse &&
		q.Org == "" && q.Since.IsZero() && q.Until.IsZero() {
		return s.queryAuditFirstUse(ctx, q)
	}
	where := []string{"seq > $1"}
	args := []any{q.Cursor}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if q.Person != "" {
		// The actor arm names the actor index's predicate (migration 0020):
		// an event whose actor is its subject is found by the subject.
		add("(subject = $%[1]d OR (actor = $%[1]d AND actor <> '' AND actor <> subject))", q.Person)
	}
	if q.Org != "" {
		add("org = $%d", q.Org)
	}
	if q.Client != "" {
		add("client = $%d", q.Client)
	}
	if len(q.Types) > 0 {
		ts := make([]string, len(q.Types))
		for i, t := range q.Types {
			ts[i] = string(t)
		}
		add("type = ANY($%d)", ts)
	}
	if !q.Since.IsZero() {
		add("time >= $%d", q.Since.UTC())
	}
	if !q.Until.IsZero() {
		add("time < $%d", q.Until.UTC())
	}
	args = append(args, q.Limit+1)
	sql := `SELECT ` + auditCols + ` FROM audit_events WHERE ` + strings.Join(where, " AND ") +
		fmt.Sprintf(" ORDER BY seq LIMIT $%d", len(args))
	// Planned for each call's values (an unnamed statement), not a cached
	// generic plan: with unknown filters a generic plan walks the primary
	// key in seq order and scans the whole trail when nothing matches,
	// which made every first sign-in to a client (client.first_use)
	// cost a table scan under load.
	rows, err := s.db(ctx).Query(ctx, sql, append([]any{pgx.QueryExecModeExec}, args...)...)
	return readAuditPage(rows, err, q.Limit)
}

// auditFirstUseSQL answers a person's client.first_use events with one
// client: the check before every authorization code. The type is in the
// SQL, not a parameter, so that every plan, generic or planned for the
// values, can use the first-use indexes (migration 0016), which hold
// nothing else; IN merges an event whose subject and actor are both the
// person.
const auditFirstUseSQL = `SELECT ` + auditCols + ` FROM audit_events WHERE seq IN (
	(SELECT seq FROM audit_events WHERE type = '` + string(audit.ClientFirstUse) + `' AND subject = $1 AND client = $2 AND seq > $3 ORDER BY seq LIMIT $4)
	UNION ALL
	(SELECT seq FROM audit_events WHERE type = '` + string(audit.ClientFirstUse) + `' AND actor = $1 AND client = $2 AND seq > $3 ORDER BY seq LIMIT $4)
) ORDER BY seq LIMIT $4`

// queryAuditFirstUse is QueryAudit for a person's client.first_use
// events with one client, nothing else: a prepared statement instead of
// one planned for each call, which cost 0.2 ms of PostgreSQL's CPU per
// sign-in.
func (s *Store) queryAuditFirstUse(ctx context.Context, q audit.Query) (audit.Page, error) {
	rows, err := s.db(ctx).Query(ctx, auditFirstUseSQL, q.Person, q.Client, q.Cursor, q.Limit+1)
	return readAuditPage(rows, err, q.Limit)
}

// readAuditPage reads up to limit events and the next page's cursor.
func readAuditPage(rows pgx.Rows, err error, limit int) (audit.Page, error) {
	if err != nil {
		return audit.Page{}, fmt.Errorf("query audit: %w", translate(err))
	}
	defer rows.Close()
	var p audit.Page
	for rows.Next() {
		var e audit.Event
		if err := scanAuditEvent(rows, &e); err != nil {
			return audit.Page{}, fmt.Errorf("query audit: %w", translate(err))
		}
		p.Events = append(p.Events, e)
	}
	if err := rows.Err(); err != nil {
		return audit.Page{}, fmt.Errorf("query audit: %w", translate(err))
	}
	if len(p.Events) > limit {
		p.Events = p.Events[:limit]
		p.Next = p.Events[limit-1].Seq
	}
	return p, nil
}

// sealRow is a candidate record for sealing.
type sealRow struct {
	xid int64
	ev  audit.Event
}

// SealAudit implements audit.Store. See audit/doc.go for the watermark:
// the round seals records with lo <= xid < hi, where lo is the previous
// batch's watermark and hi the xmin of a snapshot taken after the lock, in
// (xid, seq) order. When more than limit records are ready, it stops at a
// transaction boundary and sets the watermark just past the last
// transaction it sealed completely.
func (s *Store) SealAudit(ctx context.Context, limit int) (audit.SealBatch, error) {
	if limit <= 0 {
		limit = 1000
	}
	var b audit.SealBatch
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, sealLockKey).Scan(&locked); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if !locked {
			return nil
		}
		// One statement, one snapshot: the bounds and the chain head.
		var lo, hi, headPos int64
		var head []byte
		err := tx.QueryRow(ctx, `
			SELECT coalesce((SELECT watermark FROM audit_seal_batches ORDER BY batch DESC LIMIT 1), 0),
			       pg_snapshot_xmin(pg_current_snapshot())::text::bigint,
			       coalesce((SELECT pos FROM audit_seals ORDER BY pos DESC LIMIT 1), 0),
			       (SELECT hash FROM audit_seals ORDER BY pos DESC LIMIT 1)`).Scan(&lo, &hi, &headPos, &head)
		if err != nil {
			return fmt.Errorf("bounds: %w", err)
		}
		if head == nil {
			head = audit.GenesisHash
		}
		if hi <= lo {
			return nil
		}
		// Walk the (xid, seq) index in order and stop at the limit. The
		// table grows faster than autovacuum's statistics, so the planner
		// underestimates the rows in [lo, hi) and would otherwise fetch and
		// sort all of them for every round: 60 ms a round under load,
		// a third of PostgreSQL's time at 2,000 tokens/s
		// (docs/performance.md, round 4).
		if _, err := tx.Exec(ctx, `SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off`); err != nil {
			return fmt.Errorf("plan settings: %w", err)
		}
		cands, err := sealCandidates(ctx, tx, `xid >= $1 AND xid < $2 ORDER BY xid, seq LIMIT $3`, lo, hi, limit+1)
		if err != nil {
			return err
		}
		watermark := hi
		more := len(cands) > limit
		if more {
			next := cands[limit]
			cands = cands[:limit]
			last := cands[limit-1].xid
			if next.xid == last {
				// Never split a transaction across batches.
				i := limit
				for i > 0 && cands[i-1].xid == last {
					i--
				}
				cands = cands[:i]
				if len(cands) == 0 {
					cands, err = sealCandidates(ctx, tx, `xid = $1 ORDER BY seq`, last)
					if err != nil {
						return err
					}
				} else {
					last = cands[len(cands)-1].xid
				}
			}
			watermark = last + 1
		}
		if len(cands) == 0 {
			return nil
		}
		var batch int64
		first := headPos + 1
		hashes := make([][]byte, len(cands))
		prev := head
		for i := range cands {
			prev = audit.NextHash(prev, &cands[i].ev)
			hashes[i] = prev
		}
		err = tx.QueryRow(ctx, `INSERT INTO audit_seal_batches (watermark, first_pos, last_pos, head) VALUES ($1, $2, $3, $4) RETURNING batch`,
			watermark, first, first+int64(len(cands))-1, prev).Scan(&batch)
		if err != nil {
			return fmt.Errorf("insert batch: %w", err)
		}
		pos := make([]int64, len(cands))
		seqs := make([]int64, len(cands))
		for i := range cands {
			pos[i], seqs[i] = first+int64(i), cands[i].ev.Seq
		}
		if _, err := tx.Exec(ctx, `INSERT INTO audit_seals (pos, seq, batch, hash)
			SELECT p, s, $3, h FROM unnest($1::bigint[], $2::bigint[], $4::bytea[]) AS u(p, s, h)`,
			pos, seqs, batch, hashes); err != nil {
			return fmt.Errorf("insert seals: %w", err)
		}
		b = audit.SealBatch{Count: len(cands), FirstPos: first, LastPos: first + int64(len(cands)) - 1, Head: prev, More: more}
		return nil
	})
	if err != nil {
		return audit.SealBatch{}, fmt.Errorf("seal audit: %w", translate(err))
	}
	return b, nil
}

func sealCandidates(ctx context.Context, tx pgx.Tx, cond string, args ...any) ([]sealRow, error) {
	rows, err := tx.Query(ctx, `SELECT xid, `+auditCols+` FROM audit_events WHERE `+cond, args...)
	if err != nil {
		return nil, fmt.Errorf("candidates: %w", err)
	}
	defer rows.Close()
	var out []sealRow
	for rows.Next() {
		var r sealRow
		var detail *string
		var typ, outcome string
		e := &r.ev
		if err := rows.Scan(&r.xid, &e.Seq, &e.Time, &typ, &outcome, &e.Actor, &e.Subject, &e.Client, &e.Org, &e.RoleID,
			&e.SessionHash, &e.RequestID, &e.IP, &e.UserAgent, &detail); err != nil {
			return nil, fmt.Errorf("candidates: %w", err)
		}
		e.Type, e.Outcome = audit.Type(typ), audit.Outcome(outcome)
		if detail != nil && *detail != "" {
			e.RawDetail = []byte(*detail)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("candidates: %w", err)
	}
	return out, nil
}

// AuditHead implements audit.Store.
func (s *Store) AuditHead(ctx context.Context) (audit.Head, error) {
	var h audit.Head
	var pos, seq *int64
	err := s.db(ctx).QueryRow(ctx, `
		SELECT s.pos, s.seq, s.hash,
		       (SELECT count(*) FROM audit_events) - (SELECT count(*) FROM audit_seals)
		FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT pos, seq, hash FROM audit_seals ORDER BY pos DESC LIMIT 1) s ON true`).
		Scan(&pos, &seq, &h.Hash, &h.Unsealed)
	if err != nil {
		return audit.Head{}, fmt.Errorf("audit head: %w", translate(err))
	}
	if pos == nil {
		h.Hash = audit.GenesisHash
		return h, nil
	}
	h.Pos, h.Seq = *pos, *seq
	return h, nil
}

// FirstUnsealed implements audit.Store: the first record at or above the
// last batch's watermark, by the (xid, seq) index the sealer walks.
func (s *Store) FirstUnsealed(ctx context.Context) (time.Time, error) {
	var t time.Time
	err := s.db(ctx).QueryRow(ctx, `SELECT time FROM audit_events
		WHERE xid >= coalesce((SELECT watermark FROM audit_seal_batches ORDER BY batch DESC LIMIT 1), 0)
		ORDER BY xid, seq LIMIT 1`).Scan(&t)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("first unsealed: %w", translate(err))
	}
	return t, nil
}

// SealedAudit implements audit.Store.
func (s *Store) SealedAudit(ctx context.Context, from int64, limit int) ([]audit.Sealed, error) {
	rows, err := s.db(ctx).Query(ctx, `
		SELECT s.pos, s.seq, s.hash, e.seq, e.time, e.type, e.outcome, e.actor, e.subject, e.client, e.org,
		       e.role_id, e.session_hash, e.request_id, e.ip, e.user_agent, e.detail
		FROM audit_seals s LEFT JOIN audit_events e ON e.seq = s.seq
		WHERE s.pos >= $1 ORDER BY s.pos LIMIT $2`, from, limit)
	if err != nil {
		return nil, fmt.Errorf("sealed audit: %w", translate(err))
	}
	defer rows.Close()
	var out []audit.Sealed
	for rows.Next() {
		var l audit.Sealed
		var eseq *int64
		var etime *time.Time
		var typ, outcome, actor, subject, client, org, role, sh, rid, ip, ua, detail *string
		if err := rows.Scan(&l.Pos, &l.Seq, &l.Hash, &eseq, &etime, &typ, &outcome, &actor, &subject, &client, &org,
			&role, &sh, &rid, &ip, &ua, &detail); err != nil {
			return nil, fmt.Errorf("sealed audit: %w", translate(err))
		}
		if eseq != nil {
			e := &audit.Event{Seq: *eseq, Time: etime.UTC(), Type: audit.Type(*typ), Outcome: audit.Outcome(*outcome),
				Actor: *actor, Subject: *subject, Client: *client, Org: *org, RoleID: *role, SessionHash: *sh,
				RequestID: *rid, IP: *ip, UserAgent: *ua}
			if detail != nil && *detail != "" {
				e.RawDetail = []byte(*detail)
				_ = json.Unmarshal(e.RawDetail, &e.Detail)
			}
			l.Event = e
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sealed audit: %w", translate(err))
	}
	return out, nil
}

// AddAuditCheckpoint implements audit.Store.
func (s *Store) AddAuditCheckpoint(ctx context.Context, c audit.Checkpoint) error {
	_, err := s.db(ctx).Exec(ctx, `INSERT INTO audit_checkpoints (pos, hash, signed_at, key_id, signature) VALUES ($1, $2, $3, $4, $5)`,
		c.Pos, c.Hash, c.Time.UTC(), c.KeyID, c.Signature)
	if err != nil {
		return fmt.Errorf("add audit checkpoint %d: %w", c.Pos, translate(err))
	}
	return nil
}

// AuditCheckpoints implements audit.Store.
func (s *Store) AuditCheckpoints(ctx context.Context, from int64, limit int) ([]audit.Checkpoint, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT pos, hash, signed_at, key_id, signature FROM audit_checkpoints
		WHERE pos >= $1 ORDER BY pos LIMIT $2`, from, limit)
	if err != nil {
		return nil, fmt.Errorf("audit checkpoints: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (audit.Checkpoint, error) {
		var c audit.Checkpoint
		err := r.Scan(&c.Pos, &c.Hash, &c.Time, &c.KeyID, &c.Signature)
		c.Time = c.Time.UTC()
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("audit checkpoints: %w", translate(err))
	}
	return out, nil
}

// GrantAppRole grants role (which must exist) what the server needs: full
// DML on the ordinary tables and INSERT/SELECT only on the audit tables,
// through the nhsid_grant_app_role function of migration 0004. Run it as
// the schema owner after each migration; tests use it with a role per
// database.
func GrantAppRole(ctx context.Context, pool *pgxpool.Pool, role string) error {
	if role == "" {
		return errors.New("grant app role: empty role")
	}
	if _, err := pool.Exec(ctx, `SELECT nhsid_grant_app_role($1)`, role); err != nil {
		return fmt.Errorf("grant app role %s: %w", role, translate(err))
	}
	return nil
}
