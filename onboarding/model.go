package onboarding

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v3"
)

// Application statuses.
const (
	StatusSubmitted = "submitted" // waiting for a reviewer
	StatusQuestions = "questions" // a reviewer's question awaits the integrator
	StatusApproved  = "approved"
	StatusRejected  = "rejected"
	StatusDeferred  = "deferred" // pending information; sandbox only
)

// Application kinds.
const (
	KindNew    = "new"
	KindChange = "change" // a change request to a live client
)

// SensitiveScopes need an explicit reviewer sign-off each.
var SensitiveScopes = []string{"nationalrbacaccess", "professionalmemberships"}

// KnownScopes are the scopes an application may request.
var KnownScopes = []string{"openid", "profile", "email", "nhsperson", "nationalrbacaccess", "associatedorgs",
	"professionalmemberships", "organisationalmemberships", "selectedrole", "offline_access"}

// Contact is a person to talk to about the application.
type Contact struct {
	Name  string `json:"name"`
	Email string `json:"email"`
	Role  string `json:"role,omitempty"`
}

// Input is what an integrator submits (a new application or a change).
type Input struct {
	Organisation           string              `json:"organisation"`
	Product                string              `json:"product"`
	Commissioner           string              `json:"commissioner"`
	CommissioningEvidence  string              `json:"commissioning_evidence"`
	CommissioningReference string              `json:"commissioning_reference"`
	HostingLocation        string              `json:"hosting_location"`
	ServesEngland          bool                `json:"serves_england"`
	UserGroups             []string            `json:"user_groups"`
	Scopes                 []string            `json:"scopes"`
	RequiredAAL            int                 `json:"required_aal"`
	RedirectURIs           []string            `json:"redirect_uris"`
	JWKS                   *jose.JSONWebKeySet `json:"jwks,omitempty"`
	JWKSURI                string              `json:"jwks_uri,omitempty"`
	BackchannelLogoutURI   string              `json:"backchannel_logout_uri,omitempty"`
	SAMLMetadata           string              `json:"saml_metadata,omitempty"`
	Contacts               []Contact           `json:"contacts"`
}

// Question is a reviewer's question and the integrator's answer.
type Question struct {
	ID         string    `json:"id"`
	Text       string    `json:"text"`
	AskedBy    string    `json:"asked_by"`
	AskedAt    time.Time `json:"asked_at"`
	Answer     string    `json:"answer,omitempty"`
	AnsweredAt time.Time `json:"answered_at,omitempty"`
}

// SignOff is a reviewer's explicit acceptance of one item that needs it
// ("scope:nationalrbacaccess", "aal", "eligibility:uk_hosting", …).
type SignOff struct {
	Item string    `json:"item"`
	Note string    `json:"note,omitempty"`
	By   string    `json:"by"`
	At   time.Time `json:"at"`
}

// Decision is the review outcome.
type Decision struct {
	Outcome string    `json:"outcome"` // approved, rejected, deferred
	Reasons string    `json:"reasons"`
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	// ApprovedScopes are the scopes the production client got.
	ApprovedScopes []string `json:"approved_scopes,omitempty"`
}

// Event is one step in an application's history.
type Event struct {
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Detail string    `json:"detail,omitempty"`
}

// Check is one eligibility check, as reviewers see it.
type Check struct {
	ID     string `json:"id"`
	Title  string `json:"title"`
	Passed bool   `json:"passed"`
	Detail string `json:"detail"`
}

// Application is one request for a client (or for a change to one).
type Application struct {
	ID            string `json:"id"`
	Kind          string `json:"kind"`
	IntegratorUID string `json:"integrator_uid"`
	// ParentID is the approved application a change request changes.
	ParentID string `json:"parent_id,omitempty"`
	Input
	Status             string     `json:"status"`
	SandboxClientID    string     `json:"sandbox_client_id,omitempty"`
	ProductionClientID string     `json:"production_client_id,omitempty"`
	Questions          []Question `json:"questions,omitempty"`
	SignOffs           []SignOff  `json:"sign_offs,omitempty"`
	Decision           *Decision  `json:"decision,omitempty"`
	History            []Event    `json:"history,omitempty"`
	CreatedAt          time.Time  `json:"created_at"`
	UpdatedAt          time.Time  `json:"updated_at"`
}

// ukLocations are hosting locations accepted as the UK.
var ukLocations = map[string]bool{"uk": true, "united kingdom": true, "gb": true, "great britain": true,
	"england": true, "scotland": true, "wales": true, "northern ireland": true}

// Eligibility evaluates the seed's criteria, read for staff services: it
// serves health and care staff in England, is commissioned or sponsored by
// an NHS organisation or local authority (with evidence and a reference),
// and hosts its data in the UK.
func (a *Application) Eligibility() []Check {
	serves := a.ServesEngland && len(a.UserGroups) > 0
	commissioned := strings.TrimSpace(a.Commissioner) != "" && strings.TrimSpace(a.CommissioningEvidence) != "" &&
		strings.TrimSpace(a.CommissioningReference) != ""
	uk := ukLocations[strings.ToLower(strings.TrimSpace(a.HostingLocation))]
	out := []Check{
		{ID: "serves_staff_england", Title: "Serves health and care staff in England", Passed: serves,
			Detail: "User groups: " + strings.Join(a.UserGroups, ", ")},
		{ID: "commissioned", Title: "Commissioned or sponsored by an NHS organisation or local authority", Passed: commissioned,
			Detail: "Commissioner: " + a.Commissioner + "; reference: " + a.CommissioningReference},
		{ID: "uk_hosting", Title: "Data hosted in the UK", Passed: uk, Detail: "Hosting: " + a.HostingLocation},
	}
	if !commissioned {
		out[1].Detail = "FLAG: commissioning evidence or reference missing. " + out[1].Detail
	}
	if !uk {
		out[2].Detail = "FLAG: data hosted outside the UK. " + out[2].Detail
	}
	return out
}

// RequiredSignOffs lists the items a reviewer must sign off before approval
// with scopes: each sensitive scope, an AAL below 3, and each failed
// eligibility check.
func (a *Application) RequiredSignOffs(scopes []string) []string {
	var out []string
	for _, s := range SensitiveScopes {
		if slices.Contains(scopes, s) {
			out = append(out, "scope:"+s)
		}
	}
	if a.RequiredAAL < 3 {
		out = append(out, "aal")
	}
	for _, c := range a.Eligibility() {
		if !c.Passed {
			out = append(out, "eligibility:"+c.ID)
		}
	}
	return out
}

// MissingSignOffs are the required items not yet signed off.
func (a *Application) MissingSignOffs(scopes []string) []string {
	var out []string
	for _, item := range a.RequiredSignOffs(scopes) {
		if !slices.ContainsFunc(a.SignOffs, func(s SignOff) bool { return s.Item == item }) {
			out = append(out, item)
		}
	}
	return out
}

// OpenQuestions counts unanswered questions.
func (a *Application) OpenQuestions() int {
	n := 0
	for _, q := range a.Questions {
		if q.AnsweredAt.IsZero() {
			n++
		}
	}
	return n
}

// InQueue reports whether reviewers still have to act.
func (a *Application) InQueue() bool {
	return a.Status == StatusSubmitted || a.Status == StatusQuestions || a.Status == StatusDeferred
}

// Signup is a pending email verification.
type Signup struct {
	TokenHash    []byte    `json:"-"`
	Email        string    `json:"email"`
	GivenName    string    `json:"given_name"`
	FamilyName   string    `json:"family_name"`
	Organisation string    `json:"organisation"`
	CreatedAt    time.Time `json:"created_at"`
	ExpiresAt    time.Time `json:"expires_at"`
}

// Filter selects applications; empty fields match everything.
type Filter struct {
	IntegratorUID string
	Statuses      []string
}

// Store persists sign-ups and applications. Both store adapters implement it.
type Store interface {
	// CreateSignup stores a pending verification.
	CreateSignup(ctx context.Context, s Signup) error
	// TakeSignup deletes and returns the unexpired sign-up with tokenHash
	// (single use); store.ErrNotFound otherwise.
	TakeSignup(ctx context.Context, tokenHash []byte, now time.Time) (Signup, error)

	// CreateApplication fails with store.ErrExists for a duplicate ID.
	CreateApplication(ctx context.Context, a Application) error
	// GetApplication fails with store.ErrNotFound.
	GetApplication(ctx context.Context, id string) (Application, error)
	// UpdateApplication applies fn inside one transaction; the ID and
	// integrator cannot change; fn's error aborts and is returned as is.
	UpdateApplication(ctx context.Context, id string, fn func(*Application) error) (Application, error)
	// ListApplications returns matching applications, oldest first.
	ListApplications(ctx context.Context, f Filter) ([]Application, error)
}
