package postgres

import (
	"strings"
	"testing"

	"github.com/nhsid/nhsid/internal/testdb"
)

// TestFirstUsePlan: the first-use check (a person's client.first_use
// events with one client) reads the first-use indexes in both plans
// PostgreSQL may choose for a prepared statement. It once walked the
// client's (client, seq) index in a plan for the values, filtering every
// event of the client until it found the person's (10 ms per sign-in with
// 12,000 events for the client), and the primary key from the start of
// the trail in the generic plan (docs/performance.md, round 8).
func TestFirstUsePlan(t *testing.T) {
	pool := testdb.Pool(t)
	// A service client's tokens, which the statistics know; then a web
	// client, new since the last ANALYZE (as a newly onboarded client is),
	// with 200 people who signed in to it and 20 rounds of their tokens
	// and sign-ins. In these statistics the service client has every event.
	execAll(t, pool,
		`INSERT INTO audit_events (time, type, outcome, actor, subject, client)
		 SELECT now(), 'token.issued', 'success', 'service', 'service', 'service'
		 FROM generate_series(1, 20000) AS i`,
		`ANALYZE audit_events`,
		`INSERT INTO audit_events (time, type, outcome, actor, subject, client)
		 SELECT now(), 'client.first_use', 'success', '', (555000000000 + p)::text, 'web-client'
		 FROM generate_series(1, 200) AS p`,
		`INSERT INTO audit_events (time, type, outcome, actor, subject, client)
		 SELECT now(), t, 'success', (555000000000 + p)::text, (555000000000 + p)::text, 'web-client'
		 FROM generate_series(1, 20) AS r, generate_series(1, 200) AS p,
		      unnest(ARRAY['token.issued', 'session.started', 'authn.login']) AS t`,
		// Sizes, not statistics: the table's and indexes' row counts.
		`VACUUM audit_events`)
	for _, mode := range planModes {
		t.Run(mode, func(t *testing.T) {
			p := explainPrepared(t, pool, mode, auditFirstUseSQL, `('555000000200', 'web-client', 0, 2)`)
			for _, want := range []string{"audit_events_first_use_subject_idx", "audit_events_first_use_actor_idx"} {
				if !strings.Contains(p, want) {
					t.Errorf("plan does not use %s:\n%s", want, p)
				}
			}
			for _, bad := range []string{"audit_events_client_idx", "audit_events_pkey on audit_events audit_events_"} {
				if strings.Contains(p, bad) {
					t.Errorf("plan walks %s:\n%s", bad, p)
				}
			}
		})
	}
}
