-- Relying-party onboarding (issue 10): integrator and test-account flags on
-- people, email-verification sign-ups, and applications (each a JSON
-- document with its questions, sign-offs, decision and history).

-- +goose Up
ALTER TABLE people
    ADD COLUMN integrator   boolean NOT NULL DEFAULT false,
    ADD COLUMN test_account boolean NOT NULL DEFAULT false,
    ADD COLUMN reviewer     boolean NOT NULL DEFAULT false;

CREATE TABLE onboarding_signups (
    token_hash bytea PRIMARY KEY,
    email      text        NOT NULL,
    data       jsonb       NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE TABLE onboarding_applications (
    id             text COLLATE "C" PRIMARY KEY,
    integrator_uid text        NOT NULL,
    status         text        NOT NULL,
    data           jsonb       NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX onboarding_applications_integrator_idx ON onboarding_applications (integrator_uid, created_at);
CREATE INDEX onboarding_applications_status_idx ON onboarding_applications (status, created_at);

-- +goose Down
DROP TABLE onboarding_applications;
DROP TABLE onboarding_signups;
ALTER TABLE people DROP COLUMN integrator, DROP COLUMN test_account, DROP COLUMN reviewer;
