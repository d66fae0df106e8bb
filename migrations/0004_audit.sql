-- Audit trail (package audit): records, seals that hash-chain them, and
-- signed checkpoints of the chain head. All three are append-only: the
-- serving role gets INSERT and SELECT only (nhsid_grant_app_role below), so
-- nothing it runs can rewrite the trail; a superuser's rewrite is caught by
-- `nhsid audit verify`.
--
-- Operators: create the serving role once per cluster, then grant it after
-- every `nhsid migrate up` (run as the schema owner):
--
--   CREATE ROLE nhsid_app LOGIN PASSWORD '...';
--   SELECT nhsid_grant_app_role('nhsid_app');
--
-- A role named nhsid_app that already exists when this migration runs is
-- granted here. The function gives the role full DML on the ordinary
-- tables and INSERT/SELECT only on the audit tables.

-- +goose Up
CREATE TABLE audit_events (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- the inserting transaction (pg_current_xact_id as bigint): the
    -- sealer's watermark (see audit/doc.go)
    xid          bigint      NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    time         timestamptz NOT NULL,
    type         text        NOT NULL,
    outcome      text        NOT NULL,
    actor        text        NOT NULL DEFAULT '',
    subject      text        NOT NULL DEFAULT '',
    client       text        NOT NULL DEFAULT '',
    org          text        NOT NULL DEFAULT '',
    role_id      text        NOT NULL DEFAULT '',
    session_hash text        NOT NULL DEFAULT '',
    request_id   text        NOT NULL DEFAULT '',
    ip           text        NOT NULL DEFAULT '',
    user_agent   text        NOT NULL DEFAULT '',
    -- canonical JSON, stored and hashed verbatim (text, not jsonb)
    detail       text
);
CREATE INDEX audit_events_xid_idx ON audit_events (xid, seq);
CREATE INDEX audit_events_subject_idx ON audit_events (subject, seq) WHERE subject <> '';
CREATE INDEX audit_events_actor_idx ON audit_events (actor, seq) WHERE actor <> '';
CREATE INDEX audit_events_org_idx ON audit_events (org, seq) WHERE org <> '';
CREATE INDEX audit_events_client_idx ON audit_events (client, seq) WHERE client <> '';
CREATE INDEX audit_events_time_idx ON audit_events (time);

CREATE TABLE audit_seal_batches (
    batch     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- records with xid below this were all sealed by this batch or earlier
    watermark bigint      NOT NULL,
    first_pos bigint      NOT NULL,
    last_pos  bigint      NOT NULL,
    head      bytea       NOT NULL,
    sealed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_seals (
    pos   bigint PRIMARY KEY,
    seq   bigint NOT NULL UNIQUE,
    batch bigint NOT NULL REFERENCES audit_seal_batches (batch),
    -- SHA-256(previous hash || canonical record)
    hash  bytea  NOT NULL
);

CREATE TABLE audit_checkpoints (
    pos        bigint PRIMARY KEY,
    hash       bytea       NOT NULL,
    signed_at  timestamptz NOT NULL,
    key_id     text        NOT NULL,
    signature  bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose StatementBegin
CREATE FUNCTION nhsid_grant_app_role(app_role text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t record;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', app_role);
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' LOOP
        IF t.tablename LIKE 'audit\_%' THEN
            EXECUTE format('REVOKE ALL ON TABLE public.%I FROM %I', t.tablename, app_role);
            EXECUTE format('GRANT SELECT, INSERT ON TABLE public.%I TO %I', t.tablename, app_role);
        ELSIF t.tablename <> 'goose_db_version' THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.%I TO %I', t.tablename, app_role);
        END IF;
    END LOOP;
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO %I', app_role);
END;
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION nhsid_grant_app_role(text) FROM PUBLIC;

-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'nhsid_app') THEN
        PERFORM nhsid_grant_app_role('nhsid_app');
    END IF;
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION nhsid_grant_app_role(text);
DROP TABLE audit_checkpoints;
DROP TABLE audit_seals;
DROP TABLE audit_seal_batches;
DROP TABLE audit_events;
