-- Rate limits and lockouts (issue 9), shared by every replica: one row per
-- key (a request-rate window of a source IP, or the failures of a person,
-- client or IP), updated atomically with INSERT .. ON CONFLICT.

-- +goose Up
CREATE TABLE rate_limits (
    key          text        PRIMARY KEY,
    count        integer     NOT NULL,
    window_start timestamptz NOT NULL,
    last_at      timestamptz NOT NULL,
    locked_until timestamptz
);
CREATE INDEX rate_limits_last_idx ON rate_limits (last_at);

-- +goose Down
DROP TABLE rate_limits;
