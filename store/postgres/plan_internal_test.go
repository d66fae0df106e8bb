package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// execAll runs each statement on pool and stops the test at the first
// that fails.
func execAll(t *testing.T, pool *pgxpool.Pool, sqls ...string) {
	t.Helper()
	for _, q := range sqls {
		if _, err := pool.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// explain is the text of PostgreSQL's plan for sql (EXPLAIN sql) with
// args, run on db.
func explain(t *testing.T, db querier, sql string, args ...any) string {
	t.Helper()
	rows, err := db.Query(context.Background(), "EXPLAIN "+sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan.String()
}

// planModes are the plans PostgreSQL may choose for a prepared statement.
var planModes = []string{"force_custom_plan", "force_generic_plan"}

// explainPrepared is the plan PostgreSQL makes, in plan_cache_mode mode,
// for sql prepared and then executed with args (a parenthesised list of
// literals), on a connection of its own from pool.
func explainPrepared(t *testing.T, pool *pgxpool.Pool, mode, sql, args string) string {
	t.Helper()
	ctx := context.Background()
	c, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	if _, err := c.Exec(ctx, `SET plan_cache_mode = `+mode); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = c.Exec(ctx, `RESET plan_cache_mode; DEALLOCATE planned`) }()
	if _, err := c.Exec(ctx, `PREPARE planned AS `+sql); err != nil {
		t.Fatal(err)
	}
	return explain(t, c, `EXECUTE planned `+args)
}
