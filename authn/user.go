package authn

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/nhsid/nhsid/policy"
)

// waUser adapts a person and their credentials to webauthn.User. The user
// handle is the person's uid, which is not secret and never reused.
type waUser struct {
	person policy.Person
	creds  []Credential // usable (not revoked) credentials only
	wcreds []webauthn.Credential
}

func (u *waUser) WebAuthnID() []byte { return []byte(u.person.UID) }

func (u *waUser) WebAuthnName() string {
	if u.person.Email != "" {
		return u.person.Email
	}
	return u.person.UID
}

func (u *waUser) WebAuthnDisplayName() string {
	if u.person.DisplayName != "" {
		return u.person.DisplayName
	}
	n := strings.TrimSpace(u.person.GivenName + " " + u.person.FamilyName)
	if n == "" {
		return u.person.UID
	}
	return n
}

func (u *waUser) WebAuthnCredentials() []webauthn.Credential { return u.wcreds }

// credential returns the stored credential with id.
func (u *waUser) credential(id []byte) (Credential, bool) {
	for _, c := range u.creds {
		if string(c.ID) == string(id) {
			return c, true
		}
	}
	return Credential{}, false
}

// loadUser loads a person with their usable credentials.
func (s *Service) loadUser(ctx context.Context, uid string) (*waUser, error) {
	p, err := s.people.GetPerson(ctx, uid)
	if err != nil {
		return nil, fmt.Errorf("load person: %w", err)
	}
	all, err := s.store.ListCredentials(ctx, uid)
	if err != nil {
		return nil, fmt.Errorf("load credentials: %w", err)
	}
	u := &waUser{person: p}
	for _, c := range all {
		if !c.RevokedAt.IsZero() {
			continue
		}
		var wc webauthn.Credential
		if err := json.Unmarshal(c.Data, &wc); err != nil {
			return nil, fmt.Errorf("decode credential: %w", err)
		}
		u.creds = append(u.creds, c)
		u.wcreds = append(u.wcreds, wc)
	}
	return u, nil
}
