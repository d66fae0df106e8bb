package memory_test

import (
	"testing"

	"github.com/nhsid/nhsid/store/memory"
	"github.com/nhsid/nhsid/store/storetest"
)

func TestOAuth(t *testing.T) {
	storetest.RunOAuthTests(t, func(t *testing.T) storetest.OAuthStore { return memory.New() })
}
