package postgres

import (
	"strings"
	"testing"

	"github.com/nhsid/nhsid/internal/testdb"
)

// TestGrantRevocationPlans: revoking a grant's tokens by request id or by
// session id reads the grant indexes of migration 0021, which hold only
// access and refresh tokens, in both plans PostgreSQL may choose for a
// prepared statement. A generic plan can use a partial index only when
// the statement names the kind as a literal; with the kind as a parameter
// it scanned the whole table.
func TestGrantRevocationPlans(t *testing.T) {
	pool := testdb.Pool(t)
	// 20,000 grants of one session each: a code with its PKCE and OIDC
	// rows, an access token and a refresh token.
	execAll(t, pool,
		`INSERT INTO oauth_tokens (signature_hash, kind, request_id, client_id, requested_at,
			scopes, granted_scopes, audiences, granted_audiences, form_data, subject, session, sid, expires_at)
		 SELECT sha256(convert_to(k || g, 'UTF8')), k, 'req-' || g, 'web-client', now(),
			'{openid}', '{openid}', '{}', '{}', '', 'subject-' || g, '\x7b7d', 'sid-' || g, now() + interval '1 hour'
		 FROM generate_series(1, 20000) AS g,
		      unnest(ARRAY['authorize_code', 'pkce', 'oidc', 'access', 'refresh']) AS k`,
		`ANALYZE oauth_tokens`)
	for _, tc := range []struct {
		name, sql, index string
		args             string
	}{
		{"access by request", revokeAccessByRequestSQL, "oauth_tokens_grant_request_idx", `('req-77')`},
		{"refresh by request", revokeRefreshByRequestSQL, "oauth_tokens_grant_request_idx", `('req-77', now())`},
		{"access by session", revokeAccessBySessionSQL, "oauth_tokens_grant_sid_idx", `('sid-77')`},
		{"refresh by session", revokeRefreshBySessionSQL, "oauth_tokens_grant_sid_idx", `('sid-77', now())`},
	} {
		for _, mode := range planModes {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				p := explainPrepared(t, pool, mode, tc.sql, tc.args)
				if !strings.Contains(p, tc.index) {
					t.Errorf("plan does not use %s:\n%s", tc.index, p)
				}
				if strings.Contains(p, "Seq Scan on oauth_tokens") {
					t.Errorf("plan scans the token table:\n%s", p)
				}
			})
		}
	}
}
