package memory_test

import (
	"testing"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/federation/saml"
	"github.com/nhsid/nhsid/store/memory"
	"github.com/nhsid/nhsid/store/storetest"
)

func TestMemoryConformance(t *testing.T) {
	storetest.RunTests(t, func(t *testing.T) storetest.Store { return memory.New() })
}

func TestMemoryAuditConformance(t *testing.T) {
	storetest.RunAuditTests(t, func(t *testing.T) audit.Store { return memory.New() })
}

func TestMemorySAMLConformance(t *testing.T) {
	storetest.RunSAMLTests(t, func(t *testing.T) saml.Store { return memory.New() })
}

func TestMemoryLogoutConformance(t *testing.T) {
	storetest.RunLogoutTests(t, func(t *testing.T) storetest.LogoutStore { return memory.New() })
}
