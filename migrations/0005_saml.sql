-- SAML 2.0 federation (federation/saml.Store): registered service
-- providers with their metadata and settings, AuthnRequest/LogoutRequest
-- IDs seen (replay protection, pruned on expiry) and the SPs each SSO
-- session signed in to (for single logout).

-- +goose Up
CREATE TABLE saml_service_providers (
    id           text        PRIMARY KEY,
    entity_id    text        NOT NULL UNIQUE,
    metadata_xml bytea       NOT NULL,
    acs          jsonb       NOT NULL DEFAULT '[]',
    slo          jsonb       NOT NULL DEFAULT '[]',
    settings     jsonb       NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE saml_request_ids (
    entity_id  text        NOT NULL,
    request_id text        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (entity_id, request_id)
);
CREATE INDEX saml_request_ids_expires_at ON saml_request_ids (expires_at);

CREATE TABLE saml_participants (
    sid           text        NOT NULL,
    entity_id     text        NOT NULL,
    name_id       text        NOT NULL,
    session_index text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (sid, entity_id)
);

-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'nhsid_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON saml_service_providers, saml_request_ids, saml_participants TO nhsid_app;
    END IF;
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP TABLE saml_participants;
DROP TABLE saml_request_ids;
DROP TABLE saml_service_providers;
