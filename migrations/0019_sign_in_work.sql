-- Less work for PostgreSQL on every sign-in and token (docs/performance.md,
-- round 10).
--
-- A token's fosite session and a person's risk profile are JSON that only
-- nhsid reads: no query looks inside them. As jsonb, PostgreSQL parsed
-- each on the way in (five token rows per sign-in, about 1 KB each, and a
-- 3 KB profile) and printed it again on the way out. As bytea it keeps
-- the bytes nhsid wrote. Both ALTERs rewrite their table under an
-- exclusive lock: on a large oauth_tokens table, token requests wait
-- until it is done (22 s for a million rows here).
--
-- fillfactor leaves room in each new page, so that the updates a row gets
-- soon after its insert (a flow's login begin, finish and end, a code's
-- spend, a credential's counter, a risk profile) can stay on the row's
-- page without new index entries (heap-only tuples). It applies to pages
-- written from now on; the rewrite above applies it to the whole of
-- oauth_tokens and risk_profiles.

-- login_options: a flow started for a sign-in gets its login challenge
-- when it is created, with the request options that go with it, so that
-- the login begin only reads the flow (no write, no commit).

-- +goose Up
ALTER TABLE flows ADD COLUMN login_options bytea;
ALTER TABLE oauth_tokens
    ALTER COLUMN session TYPE bytea USING convert_to(session::text, 'UTF8'),
    SET (fillfactor = 80);
ALTER TABLE risk_profiles
    ALTER COLUMN profile TYPE bytea USING convert_to(profile::text, 'UTF8'),
    SET (fillfactor = 70);
ALTER TABLE flows SET (fillfactor = 80);
ALTER TABLE credentials SET (fillfactor = 80);

-- +goose Down
ALTER TABLE credentials RESET (fillfactor);
ALTER TABLE flows RESET (fillfactor);
ALTER TABLE flows DROP COLUMN login_options;
ALTER TABLE risk_profiles
    ALTER COLUMN profile TYPE jsonb USING convert_from(profile, 'UTF8')::jsonb,
    RESET (fillfactor);
ALTER TABLE oauth_tokens
    ALTER COLUMN session TYPE jsonb USING convert_from(session, 'UTF8')::jsonb,
    RESET (fillfactor);
