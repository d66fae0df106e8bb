package authn

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
)

func errInvalidInvite(cause error) *apierror.Error {
	return apierror.New(http.StatusBadRequest, "invalid_invite",
		"This enrolment link has expired or has already been used. Ask your Registration Authority for a new one.", cause)
}

func errReauth(cause error) *apierror.Error {
	return apierror.New(http.StatusForbidden, "reauthentication_required",
		"To add a device, sign in again with your high-assurance security key first.", cause)
}

// ErrPersonNotFound is returned by IssueInvite for an unknown or closed person.
var ErrPersonNotFound = errors.New("person not found")

// IssueInvite creates a single-use enrolment invite for a person. The code
// carries 256 random bits and only its SHA-256 is stored; url is where the
// person enrols.
func (s *Service) IssueInvite(ctx context.Context, personUID, createdBy string) (code, url string, expiresAt time.Time, err error) {
	p, err := s.people.GetPerson(ctx, personUID)
	if errors.Is(err, store.ErrNotFound) {
		return "", "", time.Time{}, fmt.Errorf("issue invite: %w", ErrPersonNotFound)
	}
	if err != nil {
		return "", "", time.Time{}, fmt.Errorf("issue invite: %w", err)
	}
	if p.Status == policy.StatusClosed {
		return "", "", time.Time{}, fmt.Errorf("issue invite: person closed: %w", ErrPersonNotFound)
	}
	if code, err = s.randomToken(32); err != nil {
		return "", "", time.Time{}, fmt.Errorf("issue invite: %w", err)
	}
	now := s.now()
	expiresAt = now.Add(s.cfg.InviteTTL)
	if err := s.store.CreateInvite(ctx, Invite{
		CodeHash: hashToken(code), PersonUID: personUID, CreatedBy: createdBy,
		CreatedAt: now, ExpiresAt: expiresAt,
	}); err != nil {
		return "", "", time.Time{}, fmt.Errorf("issue invite: %w", err)
	}
	return code, s.cfg.PublicURL + "/enrol?invite=" + code, expiresAt, nil
}

// usableInvite returns the invite for code if it can still be used.
func (s *Service) usableInvite(ctx context.Context, code string) (Invite, error) {
	if code == "" || len(code) > 128 {
		return Invite{}, errInvalidInvite(errors.New("missing or oversized invite"))
	}
	inv, err := s.store.GetInvite(ctx, hashToken(code))
	if errors.Is(err, store.ErrNotFound) {
		return Invite{}, errInvalidInvite(err)
	}
	if err != nil {
		return Invite{}, fmt.Errorf("get invite: %w", err)
	}
	if !inv.UsedAt.IsZero() {
		return Invite{}, errInvalidInvite(errors.New("invite used"))
	}
	if !s.now().Before(inv.ExpiresAt) {
		return Invite{}, errInvalidInvite(errors.New("invite expired"))
	}
	return inv, nil
}

func inviteChallengeKey(code string) string { return "enrol:" + hex.EncodeToString(hashToken(code)) }
func deviceChallengeKey(sid string) string  { return "device:" + sid }

// handleEnrolPage shows the enrolment page for an invite. The invite is a
// bearer credential, so the page sends no referrer.
func (s *Service) handleEnrolPage(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	code := r.URL.Query().Get("invite")
	inv, err := s.usableInvite(r.Context(), code)
	if err != nil {
		s.renderAPIError(w, r, "You cannot set up a security key with this link", err)
		return
	}
	p, err := s.people.GetPerson(r.Context(), inv.PersonUID)
	if err != nil || p.Status == policy.StatusClosed {
		s.renderAPIError(w, r, "You cannot set up a security key with this link", errInvalidInvite(err))
		return
	}
	s.render(w, r, http.StatusOK, "enrol", pageData{
		Title:  "Set up your security key",
		Invite: code,
		Name:   (&waUser{person: p}).WebAuthnDisplayName(),
	})
}

// registrant is who a registration ceremony is for.
type registrant struct {
	user   *waUser
	invite string   // set for an invite enrolment
	sess   *Session // set when a signed-in person adds a device
}

func (g registrant) challengeKey() string {
	if g.invite != "" {
		return inviteChallengeKey(g.invite)
	}
	return deviceChallengeKey(g.sess.SID)
}

// registrantFor resolves the invite, or else the signed-in person who may
// add a device: AAL3, signed in within AddDeviceWindow.
func (s *Service) registrantFor(r *http.Request, invite string) (registrant, error) {
	ctx := r.Context()
	if invite != "" {
		inv, err := s.usableInvite(ctx, invite)
		if err != nil {
			return registrant{}, err
		}
		u, err := s.loadUser(ctx, inv.PersonUID)
		if errors.Is(err, store.ErrNotFound) {
			return registrant{}, errInvalidInvite(err)
		}
		if err != nil {
			return registrant{}, err
		}
		if u.person.Status == policy.StatusClosed {
			return registrant{}, errInvalidInvite(errors.New("person closed"))
		}
		return registrant{user: u, invite: invite}, nil
	}
	sess, err := s.CurrentSession(r)
	if err != nil {
		return registrant{}, err
	}
	now := s.now()
	switch {
	case sess == nil || !s.Usable(sess, now):
		return registrant{}, apierror.New(http.StatusUnauthorized, "login_required",
			"Sign in first, or use the enrolment link your Registration Authority gave you.", nil)
	case sess.AAL < AAL3 || now.Sub(sess.AuthTime) > s.cfg.AddDeviceWindow:
		return registrant{}, errReauth(fmt.Errorf("session aal %d, authenticated %s ago", sess.AAL, now.Sub(sess.AuthTime)))
	}
	u, err := s.loadUser(ctx, sess.PersonUID)
	if err != nil {
		return registrant{}, err
	}
	if u.person.Status == policy.StatusClosed {
		return registrant{}, errReauth(errors.New("person closed"))
	}
	return registrant{user: u, sess: sess}, nil
}

// handleRegisterBegin answers {"invite"} (or {} for a signed-in person
// adding a device) with creation options. It does not consume the invite.
func (s *Service) handleRegisterBegin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Invite string `json:"invite"`
	}
	if err := readJSON(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	g, err := s.registrantFor(r, req.Invite)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	exclude := make([]protocol.CredentialDescriptor, 0, len(g.user.wcreds))
	for _, c := range g.user.wcreds {
		exclude = append(exclude, c.Descriptor())
	}
	creation, sd, err := s.wa.BeginRegistration(g.user,
		webauthn.WithExclusions(exclude),
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
		webauthn.WithConveyancePreference(protocol.PreferDirectAttestation),
	)
	if err != nil {
		s.fail(w, r, fmt.Errorf("begin registration: %w", err))
		return
	}
	if err := s.putChallenge(r, g.challengeKey(), sd); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, creation)
}

// handleRegisterFinish verifies an attestation, decides the AAL and stores
// the credential, consuming the invite atomically.
func (s *Service) handleRegisterFinish(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	g, err := s.registrantFor(r, r.URL.Query().Get("invite"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sd, err := s.takeChallenge(r, g.challengeKey())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		s.fail(w, r, errInvalidCredential(fmt.Errorf("parse attestation: %w", err)))
		return
	}
	flags := parsed.Response.AttestationObject.AuthData.Flags
	if !flags.HasUserVerified() {
		s.fail(w, r, errUVRequired())
		return
	}
	cred, err := s.wa.CreateCredential(g.user, sd, parsed)
	if err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) {
			err = fmt.Errorf("%w: %s", err, pe.DevInfo)
		}
		s.fail(w, r, errInvalidCredential(err))
		return
	}
	now := s.now()
	att := attestation{
		Format: cred.AttestationFormat,
		Type:   cred.AttestationType,
		AAGUID: cred.Authenticator.AAGUID,
		UV:     flags.HasUserVerified(),
		BE:     flags.HasBackupEligible(),
	}
	if x5c, ok := parsed.Response.AttestationObject.AttStatement["x5c"].([]any); ok {
		for _, c := range x5c {
			if der, ok := c.([]byte); ok {
				att.X5C = append(att.X5C, der)
			}
		}
	}
	d, err := s.policy.decide(att, now)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data, err := json.Marshal(cred)
	if err != nil {
		s.fail(w, r, fmt.Errorf("encode credential: %w", err))
		return
	}
	name := d.Model
	if name == "" {
		name = "Security key"
		if att.BE {
			name = "Passkey"
		}
	}
	c := Credential{
		ID: cred.ID, PersonUID: g.user.person.UID, Name: name, AAL: d.AAL,
		AAGUID: cred.Authenticator.AAGUID, SignCount: cred.Authenticator.SignCount,
		Data: data, CreatedAt: now,
	}
	if g.invite != "" {
		_, err = s.store.EnrolWithInvite(ctx, hashToken(g.invite), now, c)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
			s.fail(w, r, errInvalidInvite(err))
			return
		}
	} else {
		err = s.store.CreateCredential(ctx, c)
	}
	if errors.Is(err, store.ErrExists) {
		s.fail(w, r, apierror.New(http.StatusBadRequest, "invalid_credential",
			"This security key is already registered.", err))
		return
	}
	if err != nil {
		s.fail(w, r, fmt.Errorf("store credential: %w", err))
		return
	}
	if err := s.auditCredentialAdded(ctx, g, &c); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("credential registered", "person", c.PersonUID, "credential", b64url(c.ID),
		"aal", d.AAL, "reason", d.Reason, "aaguid", aaguidString(c.AAGUID), "format", att.Format,
		"via_invite", g.invite != "")
	writeJSON(w, map[string]any{"credential_id": b64url(c.ID), "aal": d.AAL})
}
