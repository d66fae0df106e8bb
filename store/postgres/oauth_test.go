package postgres_test

import (
	"testing"

	"github.com/nhsid/nhsid/internal/testdb"
	"github.com/nhsid/nhsid/store/postgres"
	"github.com/nhsid/nhsid/store/storetest"
)

func TestOAuth(t *testing.T) {
	storetest.RunOAuthTests(t, func(t *testing.T) storetest.OAuthStore {
		return postgres.New(testdb.Pool(t))
	})
}
