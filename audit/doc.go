// Package audit is the CIS audit trail: typed events (Event, Type), the
// Recorder that makes them durable before a response depends on them, the
// Sealer that hash-chains committed records and signs checkpoints, and
// Verify and ExportJSONL for auditors. It imports only the standard
// library; storage is the Store interface, implemented by store/postgres
// and store/memory. idp, authn, admin, federation and internal/server
// import it; it imports none of them.
//
// Flow:
//
//	handler ──Record──▶ Store.AppendAudit ─┐  (free concurrent inserts; the
//	handler ─RecordGrouped─▶ shared flush ─┘   event commits before the response)
//	                                         │
//	Sealer.Run ──SealAudit──▶ audit_seals: pos, seq, hash = H(prev || Canonical(record))
//	           ──Checkpoint─▶ audit_checkpoints: Ed25519 signature over (pos, hash, time)
//	nhsid audit verify ──Verify──▶ recompute, compare links and exported checkpoints
//
// # Why a watermark from transactions, not sequence numbers
//
// Sequence numbers are handed out before commit: a transaction can take
// seq 10, commit after seq 11 is committed, or roll back and leave a gap.
// A sealer that sealed "everything up to the highest seq it sees" would
// skip 10 for ever. Instead every record stores the id of the transaction
// that inserted it (xid8, pg_current_xact_id()). A sealing round, holding
// a transaction-level advisory lock so one replica seals at a time, takes
// the snapshot's xmin (pg_snapshot_xmin(pg_current_snapshot())): every
// transaction below it has finished, so the records it sees with
// xid < xmin are exactly the committed records of finished transactions,
// and no record with such an xid can still appear. Each seal batch stores
// the xmin it used; the next round seals records with
// previous_xmin <= xid < current_xmin. The ranges are disjoint and
// contiguous, so no committed record is sealed twice (also enforced by a
// unique seq in audit_seals) or skipped, however late it commits; a
// rolled-back record is simply never seen. Within a round records are
// chained in (xid, seq) order; a round that would exceed its batch size
// stops at a transaction boundary. The xmin is cluster-wide, so a long
// transaction anywhere in the cluster delays sealing (never the request
// path) until it ends; Head.Unsealed shows the backlog. The request path never waits for the sealer: an
// insert takes no lock beyond its own row. The memory store appends under
// a mutex, so every record is committed on return and it seals in seq
// order.
//
// # Append-only
//
// The server may connect as a least-privilege role that has only INSERT
// and SELECT on the audit tables (see migrations/0004_audit.sql and
// postgres.GrantAppRole). A database superuser can still rewrite rows;
// Verify then reports the first broken link, and a superuser who also
// re-hashes the chain is caught by a signed checkpoint exported before
// the rewrite (nhsid audit checkpoints > file; nhsid audit verify
// --checkpoints file).
//
// # Retention
//
// Archive writes the sealed records older than a cut (a contiguous prefix
// of the chain, never the head) with their hashes and the boundary; Purge
// checks such a file against the store and deletes exactly those records,
// through the optional Retainer interface (store/postgres, as a separate
// retention role with DELETE), recording retention.deleted. Verify then
// starts after the stored boundary, anchored on its hash. See
// docs/audit.md.
package audit
