package memory_test

import (
	"testing"

	"github.com/nhsid/nhsid/store/memory"
	"github.com/nhsid/nhsid/store/storetest"
)

func TestMemoryOnboardingConformance(t *testing.T) {
	storetest.RunOnboardingTests(t, func(t *testing.T) storetest.OnboardingStore { return memory.New() })
}
