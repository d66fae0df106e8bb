-- fosite token storage (idp.OAuthStore): authorize codes, access and refresh
-- tokens, PKCE and OpenID Connect requests, pushed authorization requests and
-- client-assertion jtis. Signatures, request URIs and jtis are stored only as
-- SHA-256 hashes. NULL expires_at means "never".

-- +goose Up
CREATE TABLE oauth_tokens (
    signature_hash        bytea       NOT NULL,
    kind                  text        NOT NULL
        CHECK (kind IN ('authorize_code', 'access', 'refresh', 'pkce', 'oidc')),
    request_id            text        NOT NULL,
    client_id             text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    requested_at          timestamptz NOT NULL,
    scopes                text[]      NOT NULL DEFAULT '{}',
    granted_scopes        text[]      NOT NULL DEFAULT '{}',
    audiences             text[]      NOT NULL DEFAULT '{}',
    granted_audiences     text[]      NOT NULL DEFAULT '{}',
    -- url-encoded, reduced to an allow-list (never secrets or code_verifier)
    form_data             text        NOT NULL DEFAULT '',
    subject               text        NOT NULL DEFAULT '',
    session               jsonb       NOT NULL,
    -- OIDC session id, for logout (RevokeBySession)
    sid                   text        NOT NULL DEFAULT '',
    active                boolean     NOT NULL DEFAULT true,
    expires_at            timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    -- refresh tokens only: the access token issued with it, when it was
    -- rotated (first used), whether its one grace use is spent, and when it
    -- was revoked (a revoked token has no grace).
    access_signature_hash bytea,
    first_used_at         timestamptz,
    grace_used            boolean     NOT NULL DEFAULT false,
    revoked_at            timestamptz,
    PRIMARY KEY (kind, signature_hash)
);
CREATE INDEX oauth_tokens_request_id_idx ON oauth_tokens (request_id, kind);
CREATE INDEX oauth_tokens_sid_idx ON oauth_tokens (sid) WHERE sid <> '';
CREATE INDEX oauth_tokens_expires_at_idx ON oauth_tokens (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX oauth_tokens_client_id_idx ON oauth_tokens (client_id);

CREATE TABLE oauth_par (
    request_uri_hash      bytea PRIMARY KEY,
    request_id            text        NOT NULL,
    client_id             text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    requested_at          timestamptz NOT NULL,
    scopes                text[]      NOT NULL DEFAULT '{}',
    audiences             text[]      NOT NULL DEFAULT '{}',
    -- url-encoded, without client credentials
    form_data             text        NOT NULL DEFAULT '',
    response_types        text[]      NOT NULL DEFAULT '{}',
    redirect_uri          text        NOT NULL DEFAULT '',
    state                 text        NOT NULL DEFAULT '',
    response_mode         text        NOT NULL DEFAULT '',
    default_response_mode text        NOT NULL DEFAULT '',
    expires_at            timestamptz NOT NULL
);
CREATE INDEX oauth_par_expires_at_idx ON oauth_par (expires_at);
CREATE INDEX oauth_par_client_id_idx ON oauth_par (client_id);

CREATE TABLE oauth_jti (
    jti_hash   bytea PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX oauth_jti_expires_at_idx ON oauth_jti (expires_at);

-- +goose Down
DROP TABLE oauth_jti;
DROP TABLE oauth_par;
DROP TABLE oauth_tokens;
