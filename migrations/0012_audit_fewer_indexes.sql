-- Fewer indexes on the audit trail: every event (one per introspection,
-- userinfo call and token) pays one B-tree insert per index, which the
-- PostgreSQL profiles under load showed as the largest single cost of an
-- audit append (docs/performance.md).
--
-- * Person look-ups (subject or actor), person-and-client look-ups (the
--   admin API's person+client filter) and the client.first_use check
--   before every authorization code (person, client and type) share two
--   indexes led by the person, instead of four. With the type in the key,
--   the check reads one entry however many times the person has used the
--   client.
-- (A BRIN index in place of the time B-tree was tried and dropped: the
-- planner then walked the primary key for time ranges, 3-4x slower.)
--
-- On a large trail this migration builds two indexes while holding a
-- write lock on audit_events: run it in a quiet period.

-- +goose Up
CREATE INDEX audit_events_subject_client_type_idx ON audit_events (subject, client, type, seq) WHERE subject <> '';
CREATE INDEX audit_events_actor_client_type_idx ON audit_events (actor, client, type, seq) WHERE actor <> '';
DROP INDEX audit_events_subject_idx;
DROP INDEX audit_events_actor_idx;
DROP INDEX audit_events_client_subject_idx;
DROP INDEX audit_events_client_actor_idx;

-- +goose Down
CREATE INDEX audit_events_client_actor_idx ON audit_events (client, actor, seq) WHERE actor <> '';
CREATE INDEX audit_events_client_subject_idx ON audit_events (client, subject, seq) WHERE subject <> '';
CREATE INDEX audit_events_actor_idx ON audit_events (actor, seq) WHERE actor <> '';
CREATE INDEX audit_events_subject_idx ON audit_events (subject, seq) WHERE subject <> '';
DROP INDEX audit_events_actor_client_type_idx;
DROP INDEX audit_events_subject_client_type_idx;
