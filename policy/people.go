package policy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/mail"
	"regexp"
	"strings"
	"time"

	"github.com/nhsid/nhsid/store"
)

// ErrInvalid marks input that breaks a policy rule; its message is safe to
// show to the caller.
var ErrInvalid = errors.New("invalid")

// InvalidError lists what was wrong with an input.
type InvalidError struct{ Problems []string }

func (e *InvalidError) Error() string { return strings.Join(e.Problems, "; ") }

// Is makes errors.Is(err, ErrInvalid) hold.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Service applies policy rules over a Store.
type Service struct {
	Store Store
	Now   func() time.Time
	Rand  io.Reader
	// RBAC stores the catalogue and positions; nil means Store, which
	// must then implement RBACStore (both adapters do).
	RBAC RBACStore
	// EndAccess, when set, ends a person's SSO sessions and revokes their
	// tokens; it runs when their last position ends or the account closes.
	EndAccess func(ctx context.Context, uid, reason string) error

	// catalogue caches the catalogue and its index briefly (rbac.go).
	catalogue catalogueCache
	// orgs caches the organisation tree (rbac.go).
	orgs orgTree
}

// NewService returns a Service with the real clock and crypto/rand.
func NewService(s Store) *Service {
	return &Service{Store: s, Now: time.Now, Rand: rand.Reader}
}

var (
	odsCode  = regexp.MustCompile(`^[A-Z0-9]{3,10}$`)
	regKinds = map[string]bool{"gmc": true, "nmc": true, "gphc": true, "gdc": true, "rcn": true, "gmp": true, "gdp": true, "consultant": true}
)

// NewUID returns a random 12-digit identifier that does not start with 0.
func NewUID(r io.Reader) (string, error) {
	n, err := rand.Int(r, big.NewInt(900_000_000_000))
	if err != nil {
		return "", fmt.Errorf("new uid: %w", err)
	}
	return fmt.Sprintf("%012d", n.Int64()+100_000_000_000), nil
}

// CreateOrganisation validates and stores an organisation.
func (s *Service) CreateOrganisation(ctx context.Context, o Organisation) (Organisation, error) {
	var p []string
	o.Code = strings.ToUpper(strings.TrimSpace(o.Code))
	o.Name = strings.TrimSpace(o.Name)
	if !odsCode.MatchString(o.Code) {
		p = append(p, "code: must be an ODS code (3-10 letters or digits)")
	}
	if o.Name == "" || len(o.Name) > 200 {
		p = append(p, "name: required, at most 200 characters")
	}
	if o.ParentCode != "" {
		if _, err := s.Store.GetOrganisation(ctx, o.ParentCode); errors.Is(err, store.ErrNotFound) {
			p = append(p, "parent_code: no such organisation")
		} else if err != nil {
			return o, err
		}
	}
	if len(p) > 0 {
		return o, &InvalidError{Problems: p}
	}
	o.CreatedAt = s.now().UTC()
	if err := s.Store.CreateOrganisation(ctx, o); err != nil {
		return o, fmt.Errorf("create organisation: %w", err)
	}
	s.dropOrgTree()
	return o, nil
}

// CreatePerson validates p, gives it a fresh UID and stores it.
func (s *Service) CreatePerson(ctx context.Context, p Person) (Person, error) {
	if err := validatePerson(&p); err != nil {
		return p, err
	}
	now := s.now().UTC()
	p.Status, p.CreatedAt, p.UpdatedAt = StatusActive, now, now
	for attempt := 0; ; attempt++ {
		uid, err := NewUID(s.rand())
		if err != nil {
			return p, err
		}
		p.UID = uid
		err = s.Store.CreatePerson(ctx, p)
		if errors.Is(err, store.ErrExists) && attempt < 5 {
			continue
		}
		if err != nil {
			return p, fmt.Errorf("create person: %w", err)
		}
		return p, nil
	}
}

func validatePerson(p *Person) error {
	var probs []string
	trim := func(s *string) { *s = strings.TrimSpace(*s) }
	for _, f := range []*string{&p.Title, &p.GivenName, &p.MiddleNames, &p.FamilyName, &p.DisplayName, &p.Email} {
		trim(f)
		if len(*f) > 200 {
			probs = append(probs, "names and email: at most 200 characters each")
			break
		}
	}
	if p.GivenName == "" {
		probs = append(probs, "given_name: required")
	}
	if p.FamilyName == "" {
		probs = append(probs, "family_name: required")
	}
	if p.Email != "" {
		if a, err := mail.ParseAddress(p.Email); err != nil || a.Address != p.Email {
			probs = append(probs, "email: not a valid address")
		}
	}
	if p.IDAssuranceLevel < 0 || p.IDAssuranceLevel > 3 {
		probs = append(probs, "id_assurance_level: must be 0 to 3")
	}
	for k, v := range p.Registrations {
		if !regKinds[k] {
			probs = append(probs, fmt.Sprintf("registrations: unknown register %q", k))
		}
		if v == "" || len(v) > 20 {
			probs = append(probs, fmt.Sprintf("registrations.%s: 1 to 20 characters", k))
		}
	}
	if p.DisplayName == "" {
		p.DisplayName = strings.TrimSpace(p.GivenName + " " + p.FamilyName)
	}
	if len(probs) > 0 {
		return &InvalidError{Problems: probs}
	}
	return nil
}
