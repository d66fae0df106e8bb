package postgres_test

import (
	"testing"

	"github.com/nhsid/nhsid/internal/testdb"
	"github.com/nhsid/nhsid/store/postgres"
	"github.com/nhsid/nhsid/store/storetest"
)

func TestPostgresOnboardingConformance(t *testing.T) {
	storetest.RunOnboardingTests(t, func(t *testing.T) storetest.OnboardingStore { return postgres.New(testdb.Pool(t)) })
}
