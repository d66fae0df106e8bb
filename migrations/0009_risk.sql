-- Contextual sign-in risk profiles (issue 11): one row per person, the
-- profile as a JSON document (device-cookie hashes, network prefixes,
-- countries, an hour-of-week histogram, clients used, the last sign-in's
-- time and place, recent decisions). See docs/privacy-risk.md for what is
-- kept and for how long; rows not updated within the retention period are
-- deleted, and a person's row goes with the person.

-- +goose Up
CREATE TABLE risk_profiles (
    person_uid text        PRIMARY KEY REFERENCES people (uid) ON DELETE CASCADE,
    profile    jsonb       NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX risk_profiles_updated_idx ON risk_profiles (updated_at);

-- +goose Down
DROP TABLE risk_profiles;
