package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Type is what happened. The set is closed: Record refuses an unknown type,
// so a typo never becomes a new kind of event nobody queries for.
type Type string

// Event types.
const (
	SigninSuccess       Type = "signin.success"
	SigninFailure       Type = "signin.failure"
	StepUp              Type = "stepup"
	RoleSelected        Type = "role.selected"
	ClientFirstUse      Type = "client.first_use"
	CodeIssued          Type = "code.issued"
	TokenIssued         Type = "token.issued"
	TokenRefreshed      Type = "token.refreshed"
	RefreshReused       Type = "refresh.reused"
	CodeReused          Type = "code.reused" // Detail["grant_revoked"], Detail["concurrent"]
	TokenRevoked        Type = "token.revoked"
	Introspection       Type = "introspection"
	Userinfo            Type = "userinfo"
	SAMLAssertionIssued Type = "saml.assertion_issued"
	Logout              Type = "logout" // Detail["kind"]: rp, backchannel, saml, user, admin, expiry
	Lockout             Type = "lockout"
	Unlock              Type = "unlock"
	Enrolment           Type = "enrolment"
	CredentialAdded     Type = "credential.added"
	CredentialRevoked   Type = "credential.revoked"
	AdminChange         Type = "admin.change" // Detail["before"], Detail["after"], Detail["object"]
	KeyRotated          Type = "key.rotated"
	ClientRegistered    Type = "client.registered"
	ClientChanged       Type = "client.changed"
	RetentionDeleted    Type = "retention.deleted"
)

var knownTypes = map[Type]bool{
	SigninSuccess: true, SigninFailure: true, StepUp: true, RoleSelected: true, ClientFirstUse: true,
	CodeIssued: true, TokenIssued: true, TokenRefreshed: true, RefreshReused: true, CodeReused: true, TokenRevoked: true,
	Introspection: true, Userinfo: true, SAMLAssertionIssued: true, Logout: true, Lockout: true,
	Unlock: true, Enrolment: true, CredentialAdded: true, CredentialRevoked: true, AdminChange: true,
	KeyRotated: true, ClientRegistered: true, ClientChanged: true, RetentionDeleted: true,
}

// Types returns every known event type.
func Types() []Type {
	out := make([]Type, 0, len(knownTypes))
	for t := range knownTypes {
		out = append(out, t)
	}
	return out
}

// Valid reports whether t is a known event type.
func (t Type) Valid() bool { return knownTypes[t] }

// Outcome is how it ended.
type Outcome string

// Outcomes.
const (
	Success Outcome = "success"
	Failure Outcome = "failure"
	Denied  Outcome = "denied"
)

// Event is one audit record. Seq is assigned by the store on append; Time,
// RequestID, IP and UserAgent are filled by the recorder when empty.
// SessionHash is HashSession of the session id, never the id itself.
// Detail is small (see the limits below) and never holds secrets, tokens,
// codes or assertions; values are strings, booleans, integers, string
// slices or nested maps of those (for AdminChange before/after).
type Event struct {
	Seq         int64          `json:"seq"`
	Time        time.Time      `json:"time"`
	Type        Type           `json:"type"`
	Outcome     Outcome        `json:"outcome"`
	Actor       string         `json:"actor,omitempty"`
	Subject     string         `json:"subject,omitempty"`
	Client      string         `json:"client,omitempty"` // OIDC client id or SAML SP entity id
	Org         string         `json:"org,omitempty"`
	RoleID      string         `json:"person_roleid,omitempty"`
	SessionHash string         `json:"session_hash,omitempty"`
	RequestID   string         `json:"request_id,omitempty"`
	IP          string         `json:"ip,omitempty"`
	UserAgent   string         `json:"user_agent,omitempty"`
	Detail      map[string]any `json:"detail,omitempty"`
	// RawDetail is the canonical JSON of Detail, as stored and hashed. The
	// recorder sets it; stores persist it verbatim and return it, so that
	// hashing never depends on re-encoding decoded values.
	RawDetail []byte `json:"-"`
}

// Limits on an event, so that the trail stays small and a caller cannot
// smuggle a document (or a token) into it.
const (
	MaxDetailBytes = 4096 // canonical JSON of Detail
	MaxFieldLen    = 512  // each string field; user agents are truncated to it
)

// forbiddenKeys are Detail key fragments that suggest a secret; so are the
// exact keys in forbiddenExact. ("token_type" or "token_client" are fine.)
var (
	forbiddenKeys  = []string{"access_token", "refresh_token", "id_token", "secret", "password", "assertion", "code_verifier", "cookie", "private", "session_id"}
	forbiddenExact = map[string]bool{"token": true, "jwt": true, "code_challenge": true}
)

// ErrInvalidEvent is returned (wrapped) for an event Record refuses.
var ErrInvalidEvent = errors.New("invalid audit event")

// normalise fills defaults and checks limits. It returns the event's
// canonical detail bytes.
func (e *Event) normalise(ctx context.Context, now time.Time) ([]byte, error) {
	if !e.Type.Valid() {
		return nil, fmt.Errorf("%w: unknown type %q", ErrInvalidEvent, e.Type)
	}
	switch e.Outcome {
	case "":
		e.Outcome = Success
	case Success, Failure, Denied:
	default:
		return nil, fmt.Errorf("%w: unknown outcome %q", ErrInvalidEvent, e.Outcome)
	}
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	ri := RequestFrom(ctx)
	if e.RequestID == "" {
		e.RequestID = ri.RequestID
	}
	if e.IP == "" {
		e.IP = ri.IP
	}
	if e.UserAgent == "" {
		e.UserAgent = ri.UserAgent
	}
	for _, f := range []*string{&e.Actor, &e.Subject, &e.Client, &e.Org, &e.RoleID, &e.SessionHash, &e.RequestID, &e.IP, &e.UserAgent} {
		*f = clip(*f)
	}
	return canonicalDetail(e.Detail)
}

func clip(s string) string {
	if len(s) <= MaxFieldLen {
		return s
	}
	s = s[:MaxFieldLen]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// canonicalDetail checks d and returns its canonical JSON (sorted keys, no
// HTML escaping), or nil for an empty detail.
func canonicalDetail(d map[string]any) ([]byte, error) {
	if len(d) == 0 {
		return nil, nil
	}
	if err := checkDetail(d, 0); err != nil {
		return nil, err
	}
	b, err := marshalCanonical(d)
	if err != nil {
		return nil, fmt.Errorf("%w: detail: %v", ErrInvalidEvent, err)
	}
	if len(b) > MaxDetailBytes {
		return nil, fmt.Errorf("%w: detail is %d bytes (max %d)", ErrInvalidEvent, len(b), MaxDetailBytes)
	}
	return b, nil
}

func checkDetail(d map[string]any, depth int) error {
	if depth > 2 {
		return fmt.Errorf("%w: detail nested too deep", ErrInvalidEvent)
	}
	for k, v := range d {
		lk := strings.ToLower(k)
		if forbiddenExact[lk] {
			return fmt.Errorf("%w: detail key %q may hold a secret", ErrInvalidEvent, k)
		}
		for _, f := range forbiddenKeys {
			if strings.Contains(lk, f) {
				return fmt.Errorf("%w: detail key %q may hold a secret", ErrInvalidEvent, k)
			}
		}
		switch v := v.(type) {
		case nil, string, bool, int, int32, int64, uint32, float64, []string:
		case map[string]any:
			if err := checkDetail(v, depth+1); err != nil {
				return err
			}
		case map[string]string, []any:
		default:
			return fmt.Errorf("%w: detail %q has unsupported type %T", ErrInvalidEvent, k, v)
		}
	}
	return nil
}

func marshalCanonical(v any) ([]byte, error) {
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return []byte(strings.TrimSuffix(sb.String(), "\n")), nil
}

// HashSession returns the value to put in Event.SessionHash for a session
// id: enough to correlate events of one session, useless to resume it.
func HashSession(sid string) string {
	if sid == "" {
		return ""
	}
	h := sha256.Sum256([]byte("nhsid-audit-session\x00" + sid))
	return hex.EncodeToString(h[:16])
}

// RequestInfo is what the HTTP middleware knows about the request.
type RequestInfo struct {
	RequestID string
	IP        string
	UserAgent string
}

type requestKey struct{}

// WithRequest returns ctx carrying ri; the server's middleware calls it so
// that every event recorded while serving the request carries them.
func WithRequest(ctx context.Context, ri RequestInfo) context.Context {
	return context.WithValue(ctx, requestKey{}, ri)
}

// RequestFrom returns the RequestInfo in ctx (zero if none).
func RequestFrom(ctx context.Context) RequestInfo {
	ri, _ := ctx.Value(requestKey{}).(RequestInfo)
	return ri
}
