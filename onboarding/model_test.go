package onboarding

import (
	"errors"
	"slices"
	"testing"

	"github.com/nhsid/nhsid/policy"
)

func TestEligibilityAndSignOffs(t *testing.T) {
	good := Input{Organisation: "Acme", Product: "P", Commissioner: "ICB", CommissioningEvidence: "contract",
		CommissioningReference: "REF-1", HostingLocation: "UK", ServesEngland: true, UserGroups: []string{"nurses"},
		Scopes: []string{"openid", "profile"}, RequiredAAL: 3}
	tests := []struct {
		name   string
		mutate func(*Input)
		want   []string
	}{
		{"eligible, AAL3, no sensitive scope", func(*Input) {}, nil},
		{"missing evidence flagged", func(in *Input) { in.CommissioningEvidence = "" }, []string{"eligibility:commissioned"}},
		{"hosting outside the UK flagged", func(in *Input) { in.HostingLocation = "Ireland" }, []string{"eligibility:uk_hosting"}},
		{"not serving England", func(in *Input) { in.ServesEngland = false }, []string{"eligibility:serves_staff_england"}},
		{"sensitive scopes and AAL2", func(in *Input) {
			in.Scopes = []string{"openid", "nationalrbacaccess", "professionalmemberships"}
			in.RequiredAAL = 2
		}, []string{"scope:nationalrbacaccess", "scope:professionalmemberships", "aal"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := good
			tc.mutate(&in)
			a := Application{Input: in}
			got := a.RequiredSignOffs(in.Scopes)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("required sign-offs %v, want %v", got, tc.want)
			}
			a.SignOffs = nil
			for _, item := range got {
				a.SignOffs = append(a.SignOffs, SignOff{Item: item})
			}
			if m := a.MissingSignOffs(in.Scopes); len(m) != 0 {
				t.Fatalf("missing after sign-off: %v", m)
			}
		})
	}
}

func TestValidateInput(t *testing.T) {
	base := func() Input {
		return Input{Organisation: "Acme", Product: "P", HostingLocation: "UK", Scopes: []string{"profile email"},
			RedirectURIs: []string{"https://rp.example/cb"}, Contacts: []Contact{{Name: "A", Email: "a@example.com"}}}
	}
	tests := []struct {
		name   string
		mutate func(*Input)
		ok     bool
	}{
		{"valid; openid added, AAL defaults to 3", func(*Input) {}, true},
		{"unknown scope", func(in *Input) { in.Scopes = []string{"patient"} }, false},
		{"no redirect", func(in *Input) { in.RedirectURIs = nil }, false},
		{"bad aal", func(in *Input) { in.RequiredAAL = 1 }, false},
		{"bad contact", func(in *Input) { in.Contacts = []Contact{{Name: "A", Email: "nope"}} }, false},
		{"no product", func(in *Input) { in.Product = " " }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			tc.mutate(&in)
			err := validateInput(&in)
			if (err == nil) != tc.ok {
				t.Fatalf("validateInput = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, policy.ErrInvalid) {
				t.Fatalf("error %v is not policy.ErrInvalid", err)
			}
			if tc.ok && (!slices.Equal(in.Scopes, []string{"openid", "profile", "email"}) || in.RequiredAAL != 3) {
				t.Fatalf("normalised input: scopes %v aal %d", in.Scopes, in.RequiredAAL)
			}
		})
	}
}
