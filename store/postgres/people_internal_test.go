package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/nhsid/nhsid/internal/testdb"
)

// TestSearchPeoplePlan: a search for a rare name reads the search indexes
// (migration 0018) rather than walking everyone in UID order, as the RA
// console's search used to.
func TestSearchPeoplePlan(t *testing.T) {
	ctx := context.Background()
	pool := testdb.Pool(t)
	execAll(t, pool,
		`INSERT INTO people (uid, given_name, family_name, display_name, email, status)
		 SELECT (555000000000 + i)::text, 'Given' || i, 'Family' || (i % 1000), 'Given' || i || ' Family' || (i % 1000),
		        'person' || i || '@example.nhs.uk', 'active'
		 FROM generate_series(1, 50000) AS i`,
		`INSERT INTO people (uid, given_name, family_name, email, status)
		 VALUES ('999000000001', 'Ada', 'Lovelace', 'ada@example.nhs.uk', 'active')`,
		`ANALYZE people`)
	p := explain(t, pool, searchPeopleSQL, pgx.QueryExecModeExec, "lovel%", "", 26)
	for _, want := range []string{"people_search_family_idx", "people_search_full_idx", "people_search_display_idx", "people_search_email_idx"} {
		if !strings.Contains(p, want) {
			t.Errorf("plan does not use %s:\n%s", want, p)
		}
	}
	if strings.Contains(p, "Index Cond: (uid > ") || strings.Contains(p, "Seq Scan") {
		t.Errorf("plan walks every person:\n%s", p)
	}
	s := New(pool)
	got, err := s.SearchPeople(ctx, "lovel", "", 25)
	if err != nil || len(got) != 1 || got[0].UID != "999000000001" {
		t.Fatalf("search: %v, %v", got, err)
	}
}
