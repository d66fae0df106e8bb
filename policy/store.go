package policy

import (
	"context"
	"time"
)

// Position is a person's job role at an organisation: the person_roleid
// that goes into tokens. A position outside its dates, ended, or awaiting
// approval is in no token and grants no authority.
type Position struct {
	// RoleID is the person_roleid: 12 digits, random, unique.
	RoleID string `json:"person_roleid"`
	// OrgID is the person_orgid: one per person and organisation, shared
	// by every position of the person there.
	OrgID     string `json:"person_orgid"`
	PersonUID string `json:"uid"`
	OrgCode   string `json:"org_code"`
	// OrgName is filled by ListPositions from the organisation (not stored).
	OrgName         string    `json:"org_name,omitempty"`
	RoleCode        string    `json:"role_code"`
	ActivityCodes   []string  `json:"activity_codes"`
	WorkgroupCodes  []string  `json:"workgroup_codes,omitempty"`
	AreaOfWorkCodes []string  `json:"aow_codes,omitempty"`
	StartsAt        time.Time `json:"start"`
	// EndsAt is zero for an open-ended position.
	EndsAt    time.Time `json:"end,omitempty"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	// PendingApproval is set on an RA Manager position until a second RA
	// Manager or an operator approves it (two-person rule).
	PendingApproval bool      `json:"pending_approval,omitempty"`
	ApprovedBy      string    `json:"approved_by,omitempty"`
	ApprovedAt      time.Time `json:"approved_at,omitempty"`
	// Bootstrap marks the first RA Manager, created directly by an operator.
	Bootstrap bool      `json:"bootstrap,omitempty"`
	EndedAt   time.Time `json:"ended_at,omitempty"`
	EndedBy   string    `json:"ended_by,omitempty"`
}

// ActiveAt reports whether the position counts at now: approved, not
// ended, and within its dates.
func (p Position) ActiveAt(now time.Time) bool {
	return !p.PendingApproval && p.EndedAt.IsZero() && !now.Before(p.StartsAt) && (p.EndsAt.IsZero() || now.Before(p.EndsAt))
}

// Verification is an identity check an RA recorded.
type Verification struct {
	PersonUID string `json:"uid"`
	// Evidence lists the documents seen (passport, driving_licence, …).
	Evidence []string `json:"evidence"`
	// VerifiedOn is the date of the check.
	VerifiedOn time.Time `json:"verified_on"`
	VerifiedBy string    `json:"verified_by"`
	// Level is the id_assurance_level the check establishes.
	Level      int       `json:"level"`
	RecordedAt time.Time `json:"recorded_at"`
}

// RBACStore is the persistence of the role catalogue, positions and
// identity verification. Both store adapters implement it.
type RBACStore interface {
	// PutCatalogue adds or replaces every entry of c, in one transaction.
	PutCatalogue(ctx context.Context, c Catalogue) error
	// GetCatalogue returns the whole catalogue, each list sorted by code.
	GetCatalogue(ctx context.Context) (Catalogue, error)

	// EnsurePersonOrgID returns the person_orgid of uid at orgCode,
	// recording candidate if there is none yet. It fails with
	// store.ErrExists if candidate is already used by another pair.
	EnsurePersonOrgID(ctx context.Context, uid, orgCode, candidate string) (string, error)
	// CreatePosition fails with store.ErrExists for a duplicate RoleID.
	CreatePosition(ctx context.Context, p Position) error
	// GetPosition fails with store.ErrNotFound.
	GetPosition(ctx context.Context, roleID string) (Position, error)
	// UpdatePosition applies fn inside one transaction; the RoleID,
	// OrgID, person and organisation cannot change.
	UpdatePosition(ctx context.Context, roleID string, fn func(*Position) error) (Position, error)
	// ListPositions returns all of a person's positions, ended ones too,
	// oldest first, with OrgName filled, in one query.
	ListPositions(ctx context.Context, uid string) ([]Position, error)
	// ListPositionsOf is ListPositions for each of uids, in one query: the
	// positions by person UID (people with none are absent).
	ListPositionsOf(ctx context.Context, uids []string) (map[string][]Position, error)
	// CountLivePositions counts positions in any of roleCodes that are not
	// ended (pending ones included).
	CountLivePositions(ctx context.Context, roleCodes []string) (int, error)

	// AddVerification records an identity check.
	AddVerification(ctx context.Context, v Verification) error
	// ListVerifications returns a person's checks, oldest first.
	ListVerifications(ctx context.Context, uid string) ([]Verification, error)
}
