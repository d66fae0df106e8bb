package policy

import "errors"

// Client environments (idp.Client's nhsid_environment).
const (
	EnvironmentProduction = "production"
	EnvironmentSandbox    = "sandbox"
)

// ErrWrongEnvironment means a person may not sign in to a client of that
// environment: test accounts only to sandbox clients, production people
// only to production clients, and integrators to neither (they hold no
// roles and are not health workers).
var ErrWrongEnvironment = errors.New("policy: person not allowed in this client environment")

// CheckEnvironment decides whether p may sign in to a client whose
// nhsid_environment is environment ("" means production).
func CheckEnvironment(p Person, environment string) error {
	sandbox := environment == EnvironmentSandbox
	switch {
	case p.Integrator:
		return ErrWrongEnvironment
	case p.TestAccount != sandbox:
		return ErrWrongEnvironment
	}
	return nil
}
