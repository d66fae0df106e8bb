-- +goose Up
-- Person-and-client lookups in the audit trail (the client.first_use check
-- on every authorization code, and the admin API's person+client filter):
-- without these, the planner walks every event of a busy client.
CREATE INDEX audit_events_client_subject_idx ON audit_events (client, subject, seq) WHERE subject <> '';
CREATE INDEX audit_events_client_actor_idx ON audit_events (client, actor, seq) WHERE actor <> '';

-- +goose Down
DROP INDEX IF EXISTS audit_events_client_actor_idx;
DROP INDEX IF EXISTS audit_events_client_subject_idx;
