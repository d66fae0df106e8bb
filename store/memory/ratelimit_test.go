package memory_test

import (
	"testing"

	"github.com/nhsid/nhsid/internal/ratelimit"
	"github.com/nhsid/nhsid/store/memory"
	"github.com/nhsid/nhsid/store/storetest"
)

func TestMemoryRateLimitConformance(t *testing.T) {
	storetest.RunRateLimitTests(t, func(t *testing.T) ratelimit.Store { return memory.New() })
}
