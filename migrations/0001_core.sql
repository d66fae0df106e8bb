-- Core schema: policy (organisations, people), authn (credentials, invites,
-- sessions, flows, WebAuthn challenges) and idp (clients, signing keys).
-- Times are timestamptz; NULL stands for Go's zero time.Time. Secrets,
-- session ids and invite codes are stored as hashes only. Keys that lists
-- page through use the "C" collation, so order and cursors are bytewise.

-- +goose Up
CREATE TABLE organisations (
    code        text COLLATE "C" PRIMARY KEY,
    name        text NOT NULL,
    parent_code text NOT NULL DEFAULT '',
    created_at  timestamptz
);
CREATE INDEX organisations_parent_code_idx ON organisations (parent_code) WHERE parent_code <> '';

CREATE TABLE people (
    uid                text COLLATE "C" PRIMARY KEY,
    title              text NOT NULL DEFAULT '',
    given_name         text NOT NULL DEFAULT '',
    middle_names       text NOT NULL DEFAULT '',
    family_name        text NOT NULL DEFAULT '',
    display_name       text NOT NULL DEFAULT '',
    email              text NOT NULL DEFAULT '',
    id_assurance_level integer NOT NULL DEFAULT 0,
    -- register name ("gmc", "nmc", ...) -> number
    registrations      jsonb NOT NULL DEFAULT '{}',
    status             text NOT NULL DEFAULT '',
    created_at         timestamptz,
    updated_at         timestamptz
);
CREATE INDEX people_email_idx ON people (lower(email)) WHERE email <> '';

CREATE TABLE credentials (
    id           bytea PRIMARY KEY,
    person_uid   text NOT NULL,
    name         text NOT NULL DEFAULT '',
    aal          integer NOT NULL,
    aaguid       bytea,
    sign_count   bigint NOT NULL DEFAULT 0,
    -- go-webauthn's webauthn.Credential as JSON, kept byte for byte
    data         bytea,
    created_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX credentials_person_uid_idx ON credentials (person_uid, created_at);

CREATE TABLE invites (
    code_hash  bytea PRIMARY KEY,
    person_uid text NOT NULL,
    created_by text NOT NULL DEFAULT '',
    created_at timestamptz,
    expires_at timestamptz,
    used_at    timestamptz
);
CREATE INDEX invites_person_uid_idx ON invites (person_uid);

CREATE TABLE sessions (
    id_hash          bytea PRIMARY KEY,
    sid              text NOT NULL UNIQUE,
    person_uid       text NOT NULL,
    credential_id    bytea,
    aal              integer NOT NULL DEFAULT 0,
    amr              text[] NOT NULL DEFAULT '{}',
    auth_time        timestamptz,
    last_seen_at     timestamptz,
    idle_timeout     interval NOT NULL DEFAULT '0',
    expires_at       timestamptz,
    user_agent       text NOT NULL DEFAULT '',
    ip               text NOT NULL DEFAULT '',
    selected_role_id text NOT NULL DEFAULT '',
    ended_at         timestamptz,
    end_reason       text NOT NULL DEFAULT ''
);
CREATE INDEX sessions_live_person_uid_idx ON sessions (person_uid, auth_time DESC) WHERE ended_at IS NULL;
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at) WHERE ended_at IS NULL;

CREATE TABLE flows (
    id               text PRIMARY KEY,
    binding_hash     bytea,
    kind             text NOT NULL DEFAULT '',
    client_id        text NOT NULL DEFAULT '',
    request          text NOT NULL DEFAULT '',
    requested_at     timestamptz,
    min_aal          integer NOT NULL DEFAULT 0,
    force_login      boolean NOT NULL DEFAULT false,
    login_hint       text NOT NULL DEFAULT '',
    resume_url       text NOT NULL DEFAULT '',
    session_sid      text NOT NULL DEFAULT '',
    authenticated_at timestamptz,
    selected_role_id text NOT NULL DEFAULT '',
    expires_at       timestamptz
);
CREATE INDEX flows_expires_at_idx ON flows (expires_at);

CREATE TABLE challenges (
    key        text PRIMARY KEY,
    data       bytea,
    expires_at timestamptz
);
CREATE INDEX challenges_expires_at_idx ON challenges (expires_at);

CREATE TABLE clients (
    id                    text COLLATE "C" PRIMARY KEY,
    -- the client's RFC 7591 / nhsid_* metadata (idp.Client as JSON, no secrets)
    metadata              jsonb NOT NULL,
    secret_hash           bytea,
    rotated_secret_hashes bytea[] NOT NULL DEFAULT '{}',
    disabled              boolean NOT NULL DEFAULT false,
    created_at            timestamptz,
    updated_at            timestamptz
);

CREATE TABLE signing_keys (
    kid               text COLLATE "C" PRIMARY KEY,
    alg               text NOT NULL,
    -- sealed under the key-encryption key
    private_encrypted bytea,
    public_jwk        bytea,
    created_at        timestamptz,
    active_at         timestamptz,
    retired_at        timestamptz,
    expires_at        timestamptz,
    revoked_at        timestamptz
);
CREATE INDEX signing_keys_created_at_idx ON signing_keys (created_at, kid);

-- +goose Down
DROP TABLE signing_keys;
DROP TABLE clients;
DROP TABLE challenges;
DROP TABLE flows;
DROP TABLE sessions;
DROP TABLE invites;
DROP TABLE credentials;
DROP TABLE people;
DROP TABLE organisations;
