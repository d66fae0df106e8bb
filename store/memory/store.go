// Package memory is the embedded store: every storage interface that policy,
// authn and idp declare, kept in process memory behind one mutex. It backs
// `nhsid serve --dev` and fast unit tests, and passes the same conformance
// suite (store/storetest) as store/postgres. Nothing survives a restart.
package memory

import (
	"sync"
	"time"
)

// Store is the in-memory store. The zero value is not usable; call New.
type Store struct {
	mu  sync.Mutex
	now func() time.Time

	core  coreState  // policy and authn aggregates, clients, keys (core.go)
	oauth oauthState // fosite token storage (oauth.go)
	saml  samlState  // SAML service providers, request IDs, participants (saml.go)
	// jobLocks serialises named background jobs (locks.go).
	jobLocks sync.Map
	rbac     rbacState   // role catalogue, positions, identity checks (rbac.go)
	audit    auditState  // audit trail, own lock (audit.go)
	logout   logoutState // session participants, logout queue, own lock (logout.go)
	rates    rateState   // rate limits and lockouts, own lock (ratelimit.go)
	risk     riskState   // sign-in risk profiles, own lock (risk.go)
	// onboarding holds relying-party sign-ups and applications, own lock
	// (onboarding.go).
	onboarding onboardingState
}

// New returns an empty store.
func New() *Store {
	s := &Store{now: time.Now}
	s.core.init()
	s.oauth.init()
	s.rbac.init()
	return s
}
