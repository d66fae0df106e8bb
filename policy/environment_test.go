package policy

import (
	"errors"
	"testing"
)

func TestCheckEnvironment(t *testing.T) {
	tests := []struct {
		name   string
		person Person
		env    string
		ok     bool
	}{
		{"production person, production client", Person{}, "", true},
		{"production person, explicit production", Person{}, EnvironmentProduction, true},
		{"production person, sandbox client", Person{}, EnvironmentSandbox, false},
		{"test account, sandbox client", Person{TestAccount: true}, EnvironmentSandbox, true},
		{"test account, production client", Person{TestAccount: true}, "", false},
		{"integrator, production client", Person{Integrator: true}, "", false},
		{"integrator, sandbox client", Person{Integrator: true}, EnvironmentSandbox, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckEnvironment(tc.person, tc.env)
			if (err == nil) != tc.ok {
				t.Fatalf("CheckEnvironment = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrWrongEnvironment) {
				t.Fatalf("error %v is not ErrWrongEnvironment", err)
			}
		})
	}
}
