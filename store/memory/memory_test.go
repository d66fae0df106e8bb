package memory_test

import (
	"testing"

	"github.com/nhsid/nhsid/store/memory"
	"github.com/nhsid/nhsid/store/storetest"
)

func TestMemoryConformance(t *testing.T) {
	storetest.RunTests(t, func(t *testing.T) storetest.Store { return memory.New() })
}
