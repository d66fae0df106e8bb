package postgres_test

import (
	"testing"

	"github.com/nhsid/nhsid/internal/testdb"
	"github.com/nhsid/nhsid/store/postgres"
	"github.com/nhsid/nhsid/store/storetest"
)

func TestPostgresRiskConformance(t *testing.T) {
	storetest.RunRiskTests(t, func(t *testing.T) storetest.RiskStore { return postgres.New(testdb.Pool(t)) })
}
