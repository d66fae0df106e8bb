-- Session management across apps (issue 7): which parties took part in
-- each SSO session (OIDC clients that got a code, SAML SPs that got an
-- assertion), and the durable back-channel logout queue that workers on
-- every replica drain with FOR UPDATE SKIP LOCKED.

-- +goose Up
CREATE TABLE session_participants (
    sid      text        NOT NULL,
    kind     text        NOT NULL CHECK (kind IN ('oidc', 'saml')),
    party_id text        NOT NULL,
    first_at timestamptz NOT NULL,
    PRIMARY KEY (sid, kind, party_id)
);

CREATE TABLE logout_deliveries (
    id              text        PRIMARY KEY,
    client_id       text        NOT NULL,
    uri             text        NOT NULL,
    sid             text        NOT NULL DEFAULT '',
    subject         text        NOT NULL DEFAULT '',
    jti             text        NOT NULL,
    token           text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    delivered_at    timestamptz,
    failed_at       timestamptz,
    last_error      text        NOT NULL DEFAULT ''
);
CREATE INDEX logout_deliveries_due_idx ON logout_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;

-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'nhsid_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON session_participants, logout_deliveries TO nhsid_app;
    END IF;
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP TABLE logout_deliveries;
DROP TABLE session_participants;
