-- One B-tree insert fewer for most audit events (docs/performance.md,
-- round 13).
--
-- Most events have the same actor and subject: a person signs in, a
-- service client gets a token. The person index (subject, client, type,
-- seq) already finds those by either. The actor index now holds only the
-- events whose actor is someone else (an administrator's change, an RA
-- manager's assignment), and the person query asks it only for those:
-- (subject = p OR (actor = p AND actor <> subject)) is the same set.
--
-- Built CONCURRENTLY, like 0016, so that the trail keeps taking events.

-- +goose NO TRANSACTION
-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS audit_events_actor_other_idx;
CREATE INDEX CONCURRENTLY audit_events_actor_other_idx ON audit_events (actor, client, type, seq) WHERE actor <> '' AND actor <> subject;
DROP INDEX CONCURRENTLY IF EXISTS audit_events_actor_client_type_idx;

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS audit_events_actor_client_type_idx;
CREATE INDEX CONCURRENTLY audit_events_actor_client_type_idx ON audit_events (actor, client, type, seq) WHERE actor <> '';
DROP INDEX CONCURRENTLY IF EXISTS audit_events_actor_other_idx;
