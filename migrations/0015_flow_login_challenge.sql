-- A sign-in flow keeps its login ceremony's challenge (go-webauthn's
-- SessionData as JSON) in its own row, where it lived in the challenges
-- table: the finish reads it with the flow and uses it up in the write
-- that records the sign-in, one statement and one commit fewer per
-- sign-in (docs/performance.md, round 7). login_challenge_uses counts the
-- spends since the challenge was set; the CHECK makes a second spend (a
-- replayed or concurrent finish) fail the write, and with it the sign-in.

-- +goose Up
ALTER TABLE flows
    ADD COLUMN login_challenge bytea,
    ADD COLUMN login_challenge_expires_at timestamptz,
    ADD COLUMN login_challenge_uses smallint NOT NULL DEFAULT 0
        CONSTRAINT flows_login_challenge_once CHECK (login_challenge_uses <= 1);

-- +goose Down
ALTER TABLE flows
    DROP COLUMN login_challenge_uses,
    DROP COLUMN login_challenge_expires_at,
    DROP COLUMN login_challenge;
