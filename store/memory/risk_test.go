package memory_test

import (
	"testing"

	"github.com/nhsid/nhsid/store/memory"
	"github.com/nhsid/nhsid/store/storetest"
)

func TestRiskConformance(t *testing.T) {
	storetest.RunRiskTests(t, func(t *testing.T) storetest.RiskStore { return memory.New() })
}
