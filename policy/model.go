package policy

import (
	"context"
	"strings"
	"time"
)

// Organisation is a care organisation keyed by its ODS code.
type Organisation struct {
	Code       string    `json:"code"`
	Name       string    `json:"name"`
	ParentCode string    `json:"parent_code,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
}

// Person statuses.
const (
	StatusActive = "active"
	StatusClosed = "closed"
)

// Person is a health or care worker known to nhsid.
type Person struct {
	// UID is the 12-digit nhsid_useruid; random, unique, never reused.
	UID         string `json:"uid"`
	Title       string `json:"title,omitempty"`
	GivenName   string `json:"given_name"`
	MiddleNames string `json:"middle_names,omitempty"`
	FamilyName  string `json:"family_name"`
	DisplayName string `json:"display_name,omitempty"`
	Email       string `json:"email,omitempty"`
	// IDAssuranceLevel is 0..3; 3 means verified face to face by an RA.
	IDAssuranceLevel int `json:"id_assurance_level"`
	// Registrations maps a professional register ("gmc", "nmc", "gphc",
	// "gdc", "rcn", "gmp", "gdp", "consultant") to the person's number.
	Registrations map[string]string `json:"registrations,omitempty"`
	Status        string            `json:"status"`
	// Integrator marks a relying-party integrator (onboarding): not NHS
	// staff, never holds positions, never signs in to a production client.
	Integrator bool `json:"integrator,omitempty"`
	// TestAccount marks a test person: signs in only to sandbox clients.
	TestAccount bool `json:"test_account,omitempty"`
	// Reviewer may review relying-party applications (onboarding).
	Reviewer  bool      `json:"reviewer,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Store is the persistence policy needs.
type Store interface {
	// CreateOrganisation fails with store.ErrExists for a duplicate code.
	CreateOrganisation(ctx context.Context, o Organisation) error
	// GetOrganisation fails with store.ErrNotFound.
	GetOrganisation(ctx context.Context, code string) (Organisation, error)
	// ListOrganisations returns organisations ordered by code, after the
	// cursor (a code; "" for the start), at most limit of them.
	ListOrganisations(ctx context.Context, after string, limit int) ([]Organisation, error)

	// CreatePerson fails with store.ErrExists for a duplicate UID.
	CreatePerson(ctx context.Context, p Person) error
	// GetPerson fails with store.ErrNotFound.
	GetPerson(ctx context.Context, uid string) (Person, error)
	// UpdatePerson applies fn to the current record inside one transaction
	// and stores the result; fn's error aborts and is returned as is.
	UpdatePerson(ctx context.Context, uid string, fn func(*Person) error) (Person, error)
	// ListPeople returns people ordered by UID after the cursor.
	ListPeople(ctx context.Context, after string, limit int) ([]Person, error)
	// SearchPeople returns the people found by the search key k (see
	// SearchKey and Person.FoundBy), ordered by UID after the cursor, at
	// most limit of them.
	SearchPeople(ctx context.Context, k string, after string, limit int) ([]Person, error)
}

// SearchKey normalises a people search as SearchPeople expects it: lower
// case, trimmed, with single spaces between words, and without bytes that
// are not UTF-8 (a search cut short in the middle of a character).
func SearchKey(q string) string {
	return strings.ToLower(strings.Join(strings.Fields(strings.ToValidUTF8(q, "")), " "))
}

// FoundBy reports whether the search key k (see SearchKey) finds p: k
// starts p's family name, full name (given then family), display name or
// email address, ignoring case. Memory stores use it; it defines what
// the SQL must match. An empty key finds no one.
func (p Person) FoundBy(k string) bool {
	if k == "" {
		return false
	}
	for _, f := range []string{p.FamilyName, p.GivenName + " " + p.FamilyName, p.DisplayName, p.Email} {
		if strings.HasPrefix(strings.ToLower(f), k) {
			return true
		}
	}
	return false
}
