package policy_test

import (
	"context"
	"testing"
)

// TestCatalogueCacheSeesImports: reads share one index (role claims read it
// on every token), and an import through the service is visible at once.
func TestCatalogueCacheSeesImports(t *testing.T) {
	e := newRBACEnv(t)
	ctx := context.Background()
	_, first, err := e.svc.Catalogue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, second, err := e.svc.Catalogue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Fatal("consecutive reads rebuilt the index")
	}
	if _, ok := first.Roles["S9000:G9000:R9000"]; ok {
		t.Fatal("test role already present")
	}
	extra := `{"job_roles":[{"code":"S9000:G9000:R9000","staff_group_name":"Test","staff_subgroup_name":"Cache","name":"Cache Tester"}],"activities":[]}`
	if _, err := e.svc.ImportCatalogue(ctx, e.op, []byte(extra), false); err != nil {
		t.Fatal(err)
	}
	_, after, err := e.svc.Catalogue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := after.Roles["S9000:G9000:R9000"]; !ok {
		t.Fatal("an import was not visible through the cache")
	}
}
