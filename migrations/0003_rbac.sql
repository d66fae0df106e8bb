-- National RBAC: the role catalogue (job roles, activities, workgroups,
-- areas of work, each entry a JSON document keyed by kind and code),
-- person_orgid per person and organisation, positions (person_roleid) and
-- identity verification records. Positions are never deleted: ending one
-- sets ended_at. NULL times stand for Go's zero time.Time.

-- +goose Up
CREATE TABLE rbac_catalogue (
    kind text NOT NULL,
    code text COLLATE "C" NOT NULL,
    doc  jsonb NOT NULL,
    PRIMARY KEY (kind, code)
);

CREATE TABLE person_orgs (
    person_orgid text PRIMARY KEY,
    person_uid   text NOT NULL,
    org_code     text NOT NULL,
    UNIQUE (person_uid, org_code)
);

CREATE TABLE positions (
    person_roleid      text PRIMARY KEY,
    person_orgid       text NOT NULL,
    person_uid         text NOT NULL,
    org_code           text NOT NULL,
    role_code          text NOT NULL,
    activity_codes     text[] NOT NULL DEFAULT '{}',
    workgroup_codes    text[] NOT NULL DEFAULT '{}',
    aow_codes          text[] NOT NULL DEFAULT '{}',
    starts_at          timestamptz,
    ends_at            timestamptz,
    created_by         text NOT NULL DEFAULT '',
    created_at         timestamptz,
    pending_approval   boolean NOT NULL DEFAULT false,
    approved_by        text NOT NULL DEFAULT '',
    approved_at        timestamptz,
    bootstrap          boolean NOT NULL DEFAULT false,
    ended_at           timestamptz,
    ended_by           text NOT NULL DEFAULT ''
);
CREATE INDEX positions_person_uid_idx ON positions (person_uid, created_at);
CREATE INDEX positions_live_role_idx ON positions (role_code) WHERE ended_at IS NULL;

CREATE TABLE identity_verifications (
    id          bigserial PRIMARY KEY,
    person_uid  text NOT NULL,
    evidence    text[] NOT NULL DEFAULT '{}',
    verified_on timestamptz,
    verified_by text NOT NULL DEFAULT '',
    level       integer NOT NULL,
    recorded_at timestamptz
);
CREATE INDEX identity_verifications_person_uid_idx ON identity_verifications (person_uid, id);

-- +goose Down
DROP TABLE identity_verifications;
DROP TABLE positions;
DROP TABLE person_orgs;
DROP TABLE rbac_catalogue;
