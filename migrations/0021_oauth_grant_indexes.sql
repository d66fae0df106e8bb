-- Six B-tree inserts fewer per sign-in (docs/performance.md, round 14).
--
-- A grant is revoked by its request id (a code used twice, a refresh token
-- replayed after its grace period) and by its session id (logout); both
-- look for access and refresh tokens only. An authorization code and its
-- PKCE and OpenID Connect rows are found by their signature (the primary
-- key) and are spent or expire within minutes. So the request-id and
-- session-id indexes now hold only access and refresh tokens: a sign-in
-- no longer adds the code's three rows to each of them. Both keys are random,
-- so each insert dirtied a random leaf page of a large index.
--
-- Built CONCURRENTLY, like 0016 and 0020, so that tokens keep being
-- issued while they build.

-- +goose NO TRANSACTION
-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS oauth_tokens_grant_request_idx;
CREATE INDEX CONCURRENTLY oauth_tokens_grant_request_idx ON oauth_tokens (request_id, kind) WHERE kind IN ('access', 'refresh');
DROP INDEX CONCURRENTLY IF EXISTS oauth_tokens_request_id_idx;
DROP INDEX CONCURRENTLY IF EXISTS oauth_tokens_grant_sid_idx;
CREATE INDEX CONCURRENTLY oauth_tokens_grant_sid_idx ON oauth_tokens (sid, kind) WHERE sid <> '' AND kind IN ('access', 'refresh');
DROP INDEX CONCURRENTLY IF EXISTS oauth_tokens_sid_idx;

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS oauth_tokens_sid_idx;
CREATE INDEX CONCURRENTLY oauth_tokens_sid_idx ON oauth_tokens (sid) WHERE sid <> '';
DROP INDEX CONCURRENTLY IF EXISTS oauth_tokens_grant_sid_idx;
DROP INDEX CONCURRENTLY IF EXISTS oauth_tokens_request_id_idx;
CREATE INDEX CONCURRENTLY oauth_tokens_request_id_idx ON oauth_tokens (request_id, kind);
DROP INDEX CONCURRENTLY IF EXISTS oauth_tokens_grant_request_idx;
