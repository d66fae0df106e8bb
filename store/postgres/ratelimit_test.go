package postgres_test

import (
	"testing"

	"github.com/nhsid/nhsid/internal/ratelimit"
	"github.com/nhsid/nhsid/internal/testdb"
	"github.com/nhsid/nhsid/store/postgres"
	"github.com/nhsid/nhsid/store/storetest"
)

func TestPostgresRateLimitConformance(t *testing.T) {
	storetest.RunRateLimitTests(t, func(t *testing.T) ratelimit.Store { return postgres.New(testdb.Pool(t)) })
}
