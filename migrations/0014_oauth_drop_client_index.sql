-- The client_id indexes on token and PAR rows served the foreign keys'
-- ON DELETE CASCADE, which migration 0013 dropped (clients are disabled,
-- never deleted). No query looks tokens up by client, so each index was
-- one B-tree insert per token for nothing (docs/performance.md, round 4).

-- +goose Up
DROP INDEX IF EXISTS oauth_tokens_client_id_idx;
DROP INDEX IF EXISTS oauth_par_client_id_idx;

-- +goose Down
CREATE INDEX IF NOT EXISTS oauth_par_client_id_idx ON oauth_par (client_id);
CREATE INDEX IF NOT EXISTS oauth_tokens_client_id_idx ON oauth_tokens (client_id);
