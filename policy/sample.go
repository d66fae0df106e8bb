package policy

import (
	_ "embed"
	"fmt"
)

//go:embed catalogue/sample.json
var sampleCatalogue []byte

// SampleCatalogue returns a realistic, made-up catalogue in the national
// format (job roles, activities with inclusion, RA roles, workgroups and
// areas of work), for `serve --dev` and tests.
func SampleCatalogue() Catalogue {
	c, err := ParseCatalogueJSON(sampleCatalogue, Catalogue{})
	if err != nil {
		panic(fmt.Sprintf("policy: embedded sample catalogue: %v", err))
	}
	return c
}

// Sample role codes, for tests and demo data.
const (
	SampleClinicalRole = "S8000:G8000:R8000"
	SampleAdminRole    = "S8000:G8001:R8008"
	SampleNurseRole    = "S8000:G8002:R8001"
	SamplePharmacist   = "S8000:G8004:R8006"
	SampleRAManager    = "S8001:G8101:R5080"
	SampleRAAgent      = "S8001:G8101:R5090"
	SampleSponsor      = "S8001:G8101:R5100"
	SampleIDChecker    = "S8001:G8101:R5110"
	SampleUnlocker     = "S8001:G8101:R5120"
)

// SampleCatalogueJSON returns the sample catalogue in its JSON form.
func SampleCatalogueJSON() ([]byte, error) {
	return append([]byte(nil), sampleCatalogue...), nil
}
