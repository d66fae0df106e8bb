package idp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store/memory"
)

// fixedRand yields a repeating byte pattern, so generated ids are stable.
type fixedRand struct{ n byte }

func (f *fixedRand) Read(b []byte) (int, error) {
	for i := range b {
		f.n++
		b[i] = f.n
	}
	return len(b), nil
}

// roleFixture is a person with three positions at two organisations (one
// ended, one expired and two active), over the sample catalogue.
func roleFixture(t *testing.T) (*policy.Service, policy.Person) {
	t.Helper()
	ctx := context.Background()
	st := memory.New()
	now := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	svc := &policy.Service{Store: st, Now: func() time.Time { return now }, Rand: &fixedRand{}}
	op := policy.OperatorActor("operator:test")
	if err := st.PutCatalogue(ctx, policy.SampleCatalogue()); err != nil {
		t.Fatal(err)
	}
	for _, o := range []policy.Organisation{{Code: "RBA", Name: "Example Acute NHS Trust"}, {Code: "Y05", Name: "Example Ambulance Service"}} {
		if _, err := svc.CreateOrganisation(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	p, err := svc.CreatePerson(ctx, policy.Person{GivenName: "Ada", FamilyName: "Lovelace"})
	if err != nil {
		t.Fatal(err)
	}
	assign := func(in policy.PositionInput) policy.Position {
		pos, err := svc.AssignPosition(ctx, op, p.UID, in)
		if err != nil {
			t.Fatal(err)
		}
		return pos
	}
	assign(policy.PositionInput{OrgCode: "RBA", RoleCode: policy.SampleClinicalRole, ActivityCodes: []string{"B0068", "B0825"},
		WorkgroupCodes: []string{"W100001"}, AreaOfWorkCodes: []string{"P0010:Q0100:T1000"}})
	assign(policy.PositionInput{OrgCode: "RBA", RoleCode: policy.SampleAdminRole})
	assign(policy.PositionInput{OrgCode: "Y05", RoleCode: "S8000:G8003:R8004"})
	ended := assign(policy.PositionInput{OrgCode: "Y05", RoleCode: policy.SampleNurseRole})
	if _, err := svc.EndPosition(ctx, op, ended.RoleID); err != nil {
		t.Fatal(err)
	}
	assign(policy.PositionInput{OrgCode: "RBA", RoleCode: policy.SampleNurseRole, StartsAt: now.AddDate(0, -2, 0), EndsAt: now.AddDate(0, -1, 0)})
	assign(policy.PositionInput{OrgCode: "RBA", RoleCode: policy.SamplePharmacist, StartsAt: now.AddDate(0, 0, 1)})
	return svc, p
}

func TestRoleClaimsGolden(t *testing.T) {
	svc, person := roleFixture(t)
	src := idp.RoleClaims{Roles: svc}
	tests := []struct {
		name   string
		scopes fosite.Arguments
	}{
		{name: "nationalrbacaccess", scopes: fosite.Arguments{"openid", "nationalrbacaccess"}},
		{name: "associatedorgs", scopes: fosite.Arguments{"openid", "associatedorgs"}},
		{name: "organisationalmemberships", scopes: fosite.Arguments{"openid", "organisationalmemberships"}},
		{name: "none", scopes: fosite.Arguments{"openid", "profile"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := src.Claims(context.Background(), person, tt.scopes, nil)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			raw = append(raw, '\n')
			golden := filepath.Join("testdata", "roleclaims_"+tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, raw, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(raw, want) {
				t.Fatalf("claims differ from %s (run with -update if intended):\n%s", golden, raw)
			}
		})
	}
}
