-- Audit retention (audit.Archive, audit.Purge, `nhsid audit archive|purge`):
-- the boundary of each purge, and a function granting a separate retention
-- role the right to delete audit records. The serving role keeps INSERT
-- and SELECT only (nhsid_grant_app_role, migration 0004), so it still
-- cannot delete anything.
--
-- Operators: create the retention role once per cluster and grant it
-- after every `nhsid migrate up` (as the schema owner); use it only for
-- `nhsid audit purge`:
--
--   CREATE ROLE nhsid_retention LOGIN PASSWORD '...';
--   SELECT nhsid_grant_retention_role('nhsid_retention');

-- +goose Up
CREATE TABLE audit_retention (
    -- every link with pos <= this was purged; hash is the chain hash here
    pos       bigint PRIMARY KEY,
    seq       bigint      NOT NULL,
    hash      bytea       NOT NULL,
    cut       timestamptz NOT NULL,
    purged_at timestamptz NOT NULL DEFAULT now()
);

-- +goose StatementBegin
CREATE FUNCTION nhsid_grant_retention_role(retention_role text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t record;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', retention_role);
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'audit\_%' LOOP
        EXECUTE format('GRANT SELECT, INSERT, DELETE ON TABLE public.%I TO %I', t.tablename, retention_role);
    END LOOP;
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO %I', retention_role);
END;
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION nhsid_grant_retention_role(text) FROM PUBLIC;

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
DROP FUNCTION nhsid_grant_retention_role(text);
DROP TABLE audit_retention;
