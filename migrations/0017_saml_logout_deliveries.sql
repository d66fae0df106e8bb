-- SAML back-channel Single Logout gets a durable queue, like OIDC's
-- logout_deliveries: one row per SP and ended session, claimed by any
-- replica with FOR UPDATE SKIP LOCKED and retried with backoff. Until now
-- the LogoutRequests waited in the memory of the replica where the
-- session ended, and a restart lost them. A table of its own, so that
-- replicas of an older version, which claim every row of
-- logout_deliveries as an OIDC logout token, never see these.

-- +goose Up
CREATE TABLE saml_logout_deliveries (
    id              text        PRIMARY KEY,
    entity_id       text        NOT NULL,
    location        text        NOT NULL,
    sid             text        NOT NULL,
    name_id         text        NOT NULL,
    session_index   text        NOT NULL DEFAULT '',
    reason          text        NOT NULL DEFAULT '',
    attempts        integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    delivered_at    timestamptz,
    failed_at       timestamptz,
    last_error      text        NOT NULL DEFAULT ''
);
CREATE INDEX saml_logout_deliveries_due_idx ON saml_logout_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;

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
DROP TABLE saml_logout_deliveries;
