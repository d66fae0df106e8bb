-- Token and PAR rows no longer carry a foreign key to clients. The key's
-- check ran a query (through SPI) on every token inserted and took ~11 % of
-- PostgreSQL's CPU per client_credentials token in the profiles
-- (docs/performance.md). Clients are disabled, never deleted, so the key
-- protected nothing in practice; a token whose client row is gone cannot
-- be used (loading its client fails), and the GC purge removes it when it
-- expires.

-- +goose Up
ALTER TABLE oauth_tokens DROP CONSTRAINT oauth_tokens_client_id_fkey;
ALTER TABLE oauth_par DROP CONSTRAINT oauth_par_client_id_fkey;

-- +goose Down
ALTER TABLE oauth_par ADD CONSTRAINT oauth_par_client_id_fkey
    FOREIGN KEY (client_id) REFERENCES clients (id) ON DELETE CASCADE NOT VALID;
ALTER TABLE oauth_tokens ADD CONSTRAINT oauth_tokens_client_id_fkey
    FOREIGN KEY (client_id) REFERENCES clients (id) ON DELETE CASCADE NOT VALID;
