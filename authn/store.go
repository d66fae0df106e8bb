package authn

import (
	"context"
	"time"
)

// Credential is a registered WebAuthn authenticator of one person.
type Credential struct {
	// ID is the WebAuthn credential id (raw bytes).
	ID        []byte
	PersonUID string
	// Name is the person's label for it ("YubiKey 5C", "Ward tablet").
	Name string
	// AAL is 2 or 3, decided at registration (see DESIGN.md).
	AAL int
	// AAGUID of the authenticator model (16 bytes).
	AAGUID []byte
	// SignCount is the last signature counter seen.
	SignCount uint32
	// Data is the go-webauthn credential (webauthn.Credential) as JSON: the
	// public key, flags, transports and attestation summary.
	Data       []byte
	CreatedAt  time.Time
	LastUsedAt time.Time
	// RevokedAt is zero while the credential is usable.
	RevokedAt time.Time
}

// Invite is a single-use enrolment link issued by an RA. Only a hash of the
// code is stored.
type Invite struct {
	CodeHash  []byte
	PersonUID string
	CreatedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
	// UsedAt is zero until the invite is consumed.
	UsedAt time.Time
}

// Session is an SSO session. The cookie carries a random id; only its hash
// (IDHash) is stored. SID is a separate random public id used for the OIDC
// "sid" claim and logout.
type Session struct {
	IDHash       []byte
	SID          string
	PersonUID    string
	CredentialID []byte
	AAL          int
	AMR          []string
	AuthTime     time.Time
	LastSeenAt   time.Time
	// IdleTimeout: after LastSeenAt+IdleTimeout the session may no longer be
	// reused for SSO (it is not ended).
	IdleTimeout time.Duration
	// ExpiresAt is the absolute expiry.
	ExpiresAt time.Time
	UserAgent string
	IP        string
	// SelectedRoleID is the person_roleid chosen in this session, if any.
	SelectedRoleID string
	// EndedAt is zero while the session is live.
	EndedAt   time.Time
	EndReason string
}

// Flow is one interactive sign-in in progress: what the caller (an OIDC
// authorize request, later a SAML AuthnRequest) needs, bound to the browser
// that started it.
type Flow struct {
	ID string
	// BindingHash is the hash of the browser-binding cookie that started
	// the flow; every later step must present the same cookie.
	BindingHash []byte
	// Kind is "oidc" or "saml".
	Kind     string
	ClientID string
	// Request is the caller's own serialised request (for OIDC the resolved
	// authorize form, url-encoded).
	Request string
	// RequestedAt is when the original request arrived, truncated to the
	// second (fosite compares it with auth_time).
	RequestedAt time.Time
	// MinAAL is the assurance the sign-in must reach.
	MinAAL int
	// ForceLogin requires a fresh ceremony (prompt=login, max_age).
	ForceLogin bool
	LoginHint  string
	// ResumeURL is where the browser goes once authenticated.
	ResumeURL string
	// SessionSID is set when the flow has been authenticated.
	SessionSID      string
	AuthenticatedAt time.Time
	SelectedRoleID  string
	ExpiresAt       time.Time
	// LoginChallenge is the login ceremony's state (go-webauthn
	// SessionData as JSON) between begin and finish, valid until
	// LoginChallengeExpiresAt; nil when none waits.
	LoginChallenge          []byte
	LoginChallengeExpiresAt time.Time
	// LoginOptions are the WebAuthn request options (a
	// protocol.CredentialAssertion as JSON) that go with LoginChallenge
	// when StartFlow made the challenge, so that the login begin hands
	// them out without a write. Setting, spending or dropping the
	// challenge clears them.
	LoginOptions []byte
}

// CredentialStore persists WebAuthn credentials.
type CredentialStore interface {
	// CreateCredential fails with store.ErrExists for a duplicate ID.
	CreateCredential(ctx context.Context, c Credential) error
	// GetCredential fails with store.ErrNotFound. Revoked credentials are
	// returned too; callers check RevokedAt.
	GetCredential(ctx context.Context, id []byte) (Credential, error)
	// ListCredentials returns a person's credentials, revoked ones included,
	// oldest first.
	ListCredentials(ctx context.Context, personUID string) ([]Credential, error)
	// UpdateCredential applies fn inside one transaction.
	UpdateCredential(ctx context.Context, id []byte, fn func(*Credential) error) (Credential, error)
	// RecordCredentialUse stores what a sign-in changed (the signature
	// counter, the authenticator's credential data, the time of use) in one
	// step, and returns the credential. It fails with store.ErrNotFound if
	// the credential does not exist or was revoked meanwhile.
	RecordCredentialUse(ctx context.Context, id []byte, signCount uint32, data []byte, at time.Time) (Credential, error)
}

// InviteStore persists enrolment invites.
type InviteStore interface {
	CreateInvite(ctx context.Context, inv Invite) error
	// GetInvite fails with store.ErrNotFound.
	GetInvite(ctx context.Context, codeHash []byte) (Invite, error)
	// EnrolWithInvite atomically consumes the invite (it must exist, be
	// unused and not expired at now, else store.ErrNotFound) and creates the
	// credential for the invite's person. Nothing changes on error.
	EnrolWithInvite(ctx context.Context, codeHash []byte, now time.Time, c Credential) (Invite, error)
}

// SessionStore persists SSO sessions.
type SessionStore interface {
	CreateSession(ctx context.Context, s Session) error
	// GetSession fails with store.ErrNotFound. Ended sessions are returned
	// too; callers check EndedAt.
	GetSession(ctx context.Context, idHash []byte) (Session, error)
	// GetSessionBySID fails with store.ErrNotFound.
	GetSessionBySID(ctx context.Context, sid string) (Session, error)
	// UpdateSession applies fn inside one transaction.
	UpdateSession(ctx context.Context, idHash []byte, fn func(*Session) error) (Session, error)
	// ListSessions returns a person's live sessions (EndedAt zero), newest first.
	ListSessions(ctx context.Context, personUID string) ([]Session, error)
}

// FlowStore persists sign-in flows.
type FlowStore interface {
	CreateFlow(ctx context.Context, f Flow) error
	// GetFlow fails with store.ErrNotFound, also for a flow expired at now;
	// a zero now returns the flow whatever its expiry.
	GetFlow(ctx context.Context, id string, now time.Time) (Flow, error)
	// UpdateFlow applies fn to the flow with the row locked; fn's changes
	// to the login challenge are ignored (the ceremony's methods below own
	// it).
	UpdateFlow(ctx context.Context, id string, fn func(*Flow) error) (Flow, error)
	// SetFlowLoginChallenge stores a login ceremony's state in the flow,
	// replacing any earlier one and clearing LoginOptions, and returns the
	// flow, if the flow exists, is bound to bindingHash and is unexpired
	// at now; else it fails with store.ErrNotFound (LoadFlow tells why).
	SetFlowLoginChallenge(ctx context.Context, id string, bindingHash, data []byte, expiresAt, now time.Time) (Flow, error)
	// SpendFlowLogin records the session that signed the flow in, and
	// when, and uses the flow's login challenge up, changing no other field
	// and reading nothing (so it can join a write pipeline). If the
	// challenge was used up since it was set (a replayed or concurrent
	// finish), it fails with store.ErrConflict (in a write pipeline, the
	// send fails). An absent flow is not an error: the resume will not find
	// it either.
	SpendFlowLogin(ctx context.Context, id, sid string, at time.Time) error
	// DropFlowLoginChallenge forgets the flow's login challenge (a failed
	// finish uses it up). An absent flow or challenge is not an error.
	DropFlowLoginChallenge(ctx context.Context, id string) error
	// EndFlow ends a flow whose sign-in completed in the finish itself
	// (FlowCompleter): from at it reads as expired (GetFlow at a later now
	// does not find it, LoadFlow answers expired_flow, no new ceremony can
	// start on it), and its row stays until the flow purge, so that a
	// concurrent finish that read it before still fails its
	// SpendFlowLogin. It reads nothing (it can join a write pipeline); an
	// absent flow is not an error.
	EndFlow(ctx context.Context, id string, at time.Time) error
	DeleteFlow(ctx context.Context, id string) error
}

// ChallengeStore keeps WebAuthn ceremony state (go-webauthn SessionData as
// JSON) between begin and finish. Take is atomic get-and-delete, so a
// challenge can be answered once only.
type ChallengeStore interface {
	PutChallenge(ctx context.Context, key string, data []byte, expiresAt time.Time) error
	// TakeChallenge fails with store.ErrNotFound when absent or expired.
	TakeChallenge(ctx context.Context, key string, now time.Time) ([]byte, error)
}

// Store is everything authn persists.
type Store interface {
	CredentialStore
	InviteStore
	SessionStore
	FlowStore
	ChallengeStore
}
