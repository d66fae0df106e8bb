-- People search for the RA console and the admin API (policy.Store's
-- SearchPeople): a key finds the people whose family name, full name
-- (given then family), display name or email address starts with it,
-- ignoring case. The console used to page through every person in UID
-- order and stopped after 5,000, so on a national directory an RA could
-- not find most people by name. These indexes answer a prefix (LIKE
-- 'key%') on each; text_pattern_ops makes them usable whatever the
-- database's collation. people_email_idx (lower(email), for equality)
-- stays for look-ups by address.
--
-- Built CONCURRENTLY, outside a transaction, so that sign-ins go on
-- while they build; each build first drops what a failed one left.

-- +goose NO TRANSACTION
-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS people_search_family_idx;
CREATE INDEX CONCURRENTLY people_search_family_idx ON people (lower(family_name) text_pattern_ops);
DROP INDEX CONCURRENTLY IF EXISTS people_search_full_idx;
CREATE INDEX CONCURRENTLY people_search_full_idx ON people (lower(given_name || ' ' || family_name) text_pattern_ops);
DROP INDEX CONCURRENTLY IF EXISTS people_search_display_idx;
CREATE INDEX CONCURRENTLY people_search_display_idx ON people (lower(display_name) text_pattern_ops) WHERE display_name <> '';
DROP INDEX CONCURRENTLY IF EXISTS people_search_email_idx;
CREATE INDEX CONCURRENTLY people_search_email_idx ON people (lower(email) text_pattern_ops) WHERE email <> '';

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS people_search_email_idx;
DROP INDEX CONCURRENTLY IF EXISTS people_search_display_idx;
DROP INDEX CONCURRENTLY IF EXISTS people_search_full_idx;
DROP INDEX CONCURRENTLY IF EXISTS people_search_family_idx;
