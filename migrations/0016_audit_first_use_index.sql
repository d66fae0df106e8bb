-- The client.first_use check before every authorization code gets indexes
-- of its own: a person's first use of each client, and nothing else. The
-- check went through the (person, client, type, seq) indexes, but with
-- the type a parameter PostgreSQL sometimes walked another index instead:
-- the client's (client, seq) index, filtering every event of the client
-- until it found the person's (when the client was newer than the
-- statistics), or the primary key from the start of the trail (a generic
-- plan when one client's events dominate the statistics). That was 10 ms
-- of PostgreSQL's time per first sign-in with 12,000 events for the
-- client, and grows with the trail (docs/performance.md, round 8). These
-- indexes hold only client.first_use events, so they stay small, and the
-- check names the type in its SQL, so every plan can use them.
--
-- The indexes are built CONCURRENTLY, so that signing in and issuing
-- tokens (each writes the trail) go on while they build: the migration
-- runs outside a transaction, and each build first drops what a build
-- that failed part-way would have left.

-- +goose NO TRANSACTION
-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS audit_events_first_use_subject_idx;
CREATE INDEX CONCURRENTLY audit_events_first_use_subject_idx ON audit_events (subject, client, seq) WHERE type = 'client.first_use';
DROP INDEX CONCURRENTLY IF EXISTS audit_events_first_use_actor_idx;
CREATE INDEX CONCURRENTLY audit_events_first_use_actor_idx ON audit_events (actor, client, seq) WHERE type = 'client.first_use';

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS audit_events_first_use_actor_idx;
DROP INDEX CONCURRENTLY IF EXISTS audit_events_first_use_subject_idx;
