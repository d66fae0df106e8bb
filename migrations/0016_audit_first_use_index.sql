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
-- On a large trail this migration reads audit_events while holding a
-- write lock on it: run it in a quiet period.

-- +goose Up
CREATE INDEX audit_events_first_use_subject_idx ON audit_events (subject, client, seq) WHERE type = 'client.first_use';
CREATE INDEX audit_events_first_use_actor_idx ON audit_events (actor, client, seq) WHERE type = 'client.first_use';

-- +goose Down
DROP INDEX audit_events_first_use_actor_idx;
DROP INDEX audit_events_first_use_subject_idx;
