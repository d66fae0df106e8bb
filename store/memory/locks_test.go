package memory_test

import (
	"testing"

	"github.com/nhsid/nhsid/store/memory"
	"github.com/nhsid/nhsid/store/storetest"
)

func TestMemoryJobLocks(t *testing.T) {
	s := memory.New()
	storetest.RunLockTests(t, s, s)
}
