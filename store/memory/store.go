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
}

// New returns an empty store.
func New() *Store {
	s := &Store{now: time.Now}
	s.core.init()
	s.oauth.init()
	return s
}
