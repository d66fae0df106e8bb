package onboarding

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
)

// Clients registers and changes relying parties (idp.Provider and its store).
type Clients interface {
	RegisterClient(ctx context.Context, c *idp.Client) (string, error)
}

// Invites issues passkey enrolment invites (authn.Service).
type Invites interface {
	IssueInvite(ctx context.Context, personUID, createdBy string) (code, url string, expiresAt time.Time, err error)
}

// Actor is who acts: the integrator ("person:<uid>"), a reviewer
// ("person:<uid>") or the operator ("operator:…").
type Actor struct {
	ID  string
	UID string // the person's uid, empty for the operator
}

// Service runs onboarding over its dependencies.
type Service struct {
	Store       Store
	Policy      *policy.Service
	Clients     Clients
	ClientStore idp.ClientStore
	Invites     Invites
	Mailer      Mailer
	Audit       audit.Recorder
	Log         *slog.Logger
	// PublicURL is the issuer, for links in mail.
	PublicURL string
	SignupTTL time.Duration
	Now       func() time.Time
	Rand      io.Reader
}

func (s *Service) now() time.Time {
	if s.Now == nil {
		return time.Now().UTC()
	}
	return s.Now().UTC()
}

func (s *Service) token(n int) (string, error) {
	r := s.Rand
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func hashToken(t string) []byte { h := sha256.Sum256([]byte(t)); return h[:] }

func invalid(probs ...string) error {
	return &policy.InvalidError{Problems: probs}
}

func conflict(msg string) error {
	return apierror.New(http.StatusConflict, "invalid_state", msg, nil)
}

func forbidden(msg string) error {
	return apierror.New(http.StatusForbidden, "forbidden", msg, nil)
}

// record writes an audit event for an onboarding step.
func (s *Service) record(ctx context.Context, who Actor, a *Application, action, client string) error {
	err := audit.OrNop(s.Audit).Record(ctx, audit.Event{
		Type: audit.AdminChange, Actor: who.ID, Subject: a.IntegratorUID, Client: client,
		Detail: map[string]any{"object": "onboarding_application", "id": a.ID, "action": action, "status": a.Status},
	})
	if err != nil {
		return fmt.Errorf("audit onboarding %s: %w", action, err)
	}
	return nil
}

// SignupInput is what a prospective integrator gives to sign up.
type SignupInput struct {
	Email        string `json:"email"`
	GivenName    string `json:"given_name"`
	FamilyName   string `json:"family_name"`
	Organisation string `json:"organisation"`
}

// StartSignup mails a single-use verification link to in.Email.
func (s *Service) StartSignup(ctx context.Context, in SignupInput) error {
	in.Email = strings.TrimSpace(in.Email)
	in.GivenName, in.FamilyName = strings.TrimSpace(in.GivenName), strings.TrimSpace(in.FamilyName)
	var probs []string
	if a, err := mail.ParseAddress(in.Email); err != nil || a.Address != in.Email || len(in.Email) > 200 {
		probs = append(probs, "email: not a valid address")
	}
	if in.GivenName == "" || in.FamilyName == "" || len(in.GivenName) > 200 || len(in.FamilyName) > 200 {
		probs = append(probs, "given_name, family_name: required, at most 200 characters")
	}
	if len(probs) > 0 {
		return invalid(probs...)
	}
	tok, err := s.token(32)
	if err != nil {
		return err
	}
	now := s.now()
	ttl := s.SignupTTL
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	if err := s.Store.CreateSignup(ctx, Signup{TokenHash: hashToken(tok), Email: in.Email, GivenName: in.GivenName,
		FamilyName: in.FamilyName, Organisation: strings.TrimSpace(in.Organisation), CreatedAt: now, ExpiresAt: now.Add(ttl)}); err != nil {
		return fmt.Errorf("start signup: %w", err)
	}
	link := s.PublicURL + "/onboarding/verify?token=" + tok
	body := "Confirm your email address to create your NHS ID integrator account: " + link
	if err := s.Mailer.Send(ctx, in.Email, "Confirm your email address", body); err != nil {
		return fmt.Errorf("send verification: %w", err)
	}
	return nil
}

// CompleteSignup consumes a verification token, creates the integrator's
// account (no positions, ever) and returns a passkey enrolment invite.
func (s *Service) CompleteSignup(ctx context.Context, token string) (uid, inviteCode, inviteURL string, err error) {
	su, err := s.Store.TakeSignup(ctx, hashToken(token), s.now())
	if errors.Is(err, store.ErrNotFound) {
		return "", "", "", apierror.New(http.StatusBadRequest, "invalid_token", "This link is not valid or has expired. Sign up again.", err)
	}
	if err != nil {
		return "", "", "", fmt.Errorf("complete signup: %w", err)
	}
	p, err := s.Policy.CreatePerson(ctx, policy.Person{GivenName: su.GivenName, FamilyName: su.FamilyName, Email: su.Email,
		Integrator: true})
	if err != nil {
		return "", "", "", fmt.Errorf("complete signup: %w", err)
	}
	code, url, _, err := s.Invites.IssueInvite(ctx, p.UID, "onboarding:signup")
	if err != nil {
		return "", "", "", fmt.Errorf("complete signup: %w", err)
	}
	if err := audit.OrNop(s.Audit).Record(ctx, audit.Event{Type: audit.AdminChange, Actor: "onboarding:signup", Subject: p.UID,
		Detail: map[string]any{"object": "integrator", "id": p.UID, "action": "email_verified"}}); err != nil {
		return "", "", "", fmt.Errorf("complete signup: %w", err)
	}
	return p.UID, code, url, nil
}

// TestAccountInput describes a sandbox test person.
type TestAccountInput struct {
	GivenName  string `json:"given_name"`
	FamilyName string `json:"family_name"`
	OrgCode    string `json:"org_code"`
	// RoleCode defaults to the sample catalogue's clinical role.
	RoleCode string `json:"role_code"`
}

// CreateTestAccount creates a person flagged TestAccount with a realistic
// position, as the operator. Test accounts sign in to sandbox clients only.
func (s *Service) CreateTestAccount(ctx context.Context, who Actor, in TestAccountInput) (policy.Person, policy.Position, error) {
	if in.RoleCode == "" {
		in.RoleCode = policy.SampleClinicalRole
	}
	p, err := s.Policy.CreatePerson(ctx, policy.Person{GivenName: in.GivenName, FamilyName: in.FamilyName,
		IDAssuranceLevel: 3, TestAccount: true, Email: ""})
	if err != nil {
		return p, policy.Position{}, err
	}
	pos, err := s.Policy.AssignPosition(ctx, policy.Actor{Operator: true}, p.UID, policy.PositionInput{OrgCode: in.OrgCode, RoleCode: in.RoleCode})
	if err != nil {
		return p, pos, err
	}
	err = audit.OrNop(s.Audit).Record(ctx, audit.Event{Type: audit.AdminChange, Actor: who.ID, Subject: p.UID,
		Detail: map[string]any{"object": "test_account", "id": p.UID, "action": "created", "person_roleid": pos.RoleID}})
	return p, pos, err
}

// SetReviewer grants or removes the reviewer flag of a person.
func (s *Service) SetReviewer(ctx context.Context, who Actor, uid string, on bool) (policy.Person, error) {
	p, err := s.Policy.Store.UpdatePerson(ctx, uid, func(p *policy.Person) error {
		if p.Integrator || p.TestAccount {
			return invalid("uid: integrators and test accounts cannot review")
		}
		p.Reviewer = on
		p.UpdatedAt = s.now()
		return nil
	})
	if err != nil {
		return p, err
	}
	err = audit.OrNop(s.Audit).Record(ctx, audit.Event{Type: audit.AdminChange, Actor: who.ID, Subject: uid,
		Detail: map[string]any{"object": "reviewer", "id": uid, "action": "set", "reviewer": on}})
	return p, err
}

func validateInput(in *Input) error {
	var probs []string
	trim := func(v *string) { *v = strings.TrimSpace(*v) }
	for _, f := range []*string{&in.Organisation, &in.Product, &in.Commissioner, &in.CommissioningEvidence,
		&in.CommissioningReference, &in.HostingLocation, &in.JWKSURI, &in.BackchannelLogoutURI} {
		trim(f)
		if len(*f) > 2000 {
			probs = append(probs, "text fields: at most 2000 characters each")
			break
		}
	}
	if in.Organisation == "" {
		probs = append(probs, "organisation: required")
	}
	if in.Product == "" {
		probs = append(probs, "product: required")
	}
	if in.HostingLocation == "" {
		probs = append(probs, "hosting_location: required")
	}
	if len(in.SAMLMetadata) > 100_000 {
		probs = append(probs, "saml_metadata: at most 100000 characters")
	}
	var scopes []string
	for _, sc := range in.Scopes {
		for _, f := range strings.Fields(sc) {
			if !slices.Contains(KnownScopes, f) {
				probs = append(probs, fmt.Sprintf("scopes: unknown scope %q", clip(f)))
			} else if !slices.Contains(scopes, f) {
				scopes = append(scopes, f)
			}
		}
	}
	if !slices.Contains(scopes, "openid") {
		scopes = append([]string{"openid"}, scopes...)
	}
	in.Scopes = scopes
	if in.RequiredAAL == 0 {
		in.RequiredAAL = 3
	}
	if in.RequiredAAL != 2 && in.RequiredAAL != 3 {
		probs = append(probs, "required_aal: must be 2 or 3")
	}
	if len(in.RedirectURIs) == 0 || len(in.RedirectURIs) > 20 {
		probs = append(probs, "redirect_uris: 1 to 20 required")
	}
	if len(in.UserGroups) > 50 || len(in.Contacts) > 20 {
		probs = append(probs, "user_groups, contacts: too many")
	}
	if len(in.Contacts) == 0 {
		probs = append(probs, "contacts: at least one")
	}
	for _, c := range in.Contacts {
		if a, err := mail.ParseAddress(c.Email); err != nil || a.Address != c.Email || c.Name == "" {
			probs = append(probs, "contacts: each needs a name and a valid email")
			break
		}
	}
	if len(probs) > 0 {
		return invalid(probs...)
	}
	return nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}

// clientFor builds the client an application's settings describe.
func clientFor(in Input, env string, scopes []string) *idp.Client {
	c := &idp.Client{
		Name:                 in.Product + " (" + env + ")",
		RedirectURIs:         slices.Clone(in.RedirectURIs),
		GrantTypes:           []string{"authorization_code"},
		Scope:                strings.Join(scopes, " "),
		JWKS:                 in.JWKS,
		JWKSURI:              in.JWKSURI,
		BackchannelLogoutURI: in.BackchannelLogoutURI,
		RequiredAAL:          in.RequiredAAL,
		Environment:          env,
	}
	if slices.Contains(scopes, "offline_access") {
		c.GrantTypes = append(c.GrantTypes, "refresh_token")
	}
	if in.JWKS != nil || in.JWKSURI != "" {
		c.TokenEndpointAuthMethod = idp.AuthPrivateKeyJWT
		c.TokenEndpointAuthSigningAlg = "RS256"
	} else {
		c.TokenEndpointAuthMethod = idp.AuthClientSecretBasic
	}
	return c
}

// applySettings changes a live client to the settings of in with scopes,
// keeping its identity and secrets.
func applySettings(c *idp.Client, in Input, scopes []string) {
	n := clientFor(in, c.Environment, scopes)
	c.RedirectURIs, c.GrantTypes, c.Scope = n.RedirectURIs, n.GrantTypes, n.Scope
	c.JWKS, c.JWKSURI, c.BackchannelLogoutURI, c.RequiredAAL = n.JWKS, n.JWKSURI, n.BackchannelLogoutURI, n.RequiredAAL
	if c.TokenEndpointAuthMethod == idp.AuthPrivateKeyJWT || n.TokenEndpointAuthMethod == idp.AuthPrivateKeyJWT {
		c.TokenEndpointAuthMethod, c.TokenEndpointAuthSigningAlg = n.TokenEndpointAuthMethod, n.TokenEndpointAuthSigningAlg
	}
}

// Submitted is the result of a submission: the application and, once, the
// sandbox client's secret (empty for private_key_jwt).
type Submitted struct {
	Application   Application `json:"application"`
	ClientSecret  string      `json:"sandbox_client_secret,omitempty"`
	SandboxClient *idp.Client `json:"sandbox_client"`
}

func (s *Service) integrator(ctx context.Context, uid string) (policy.Person, error) {
	p, err := s.Policy.Store.GetPerson(ctx, uid)
	if err != nil {
		return p, fmt.Errorf("integrator: %w", err)
	}
	if !p.Integrator || p.Status != policy.StatusActive {
		return p, forbidden("Only an active integrator account can apply.")
	}
	return p, nil
}

// Submit stores a new application and registers its sandbox client at once.
func (s *Service) Submit(ctx context.Context, who Actor, integratorUID string, in Input) (Submitted, error) {
	if _, err := s.integrator(ctx, integratorUID); err != nil {
		return Submitted{}, err
	}
	if err := validateInput(&in); err != nil {
		return Submitted{}, err
	}
	sandbox := clientFor(in, policy.EnvironmentSandbox, in.Scopes)
	secret, err := s.Clients.RegisterClient(ctx, sandbox)
	if err != nil {
		return Submitted{}, err
	}
	id, err := s.token(12)
	if err != nil {
		return Submitted{}, err
	}
	now := s.now()
	a := Application{ID: id, Kind: KindNew, IntegratorUID: integratorUID, Input: in, Status: StatusSubmitted,
		SandboxClientID: sandbox.ID, CreatedAt: now, UpdatedAt: now,
		History: []Event{{At: now, Actor: who.ID, Action: "submitted", Detail: "sandbox client " + sandbox.ID}}}
	if err := s.Store.CreateApplication(ctx, a); err != nil {
		return Submitted{}, fmt.Errorf("submit: %w", err)
	}
	if err := s.record(ctx, who, &a, "submitted", sandbox.ID); err != nil {
		return Submitted{}, err
	}
	return Submitted{Application: a, ClientSecret: secret, SandboxClient: sandbox}, nil
}

// RequestChange opens a change request against an approved application's
// live client. The sandbox client takes the new settings at once; the live
// client keeps its settings until the change is approved.
func (s *Service) RequestChange(ctx context.Context, who Actor, integratorUID, parentID string, in Input) (Application, error) {
	parent, err := s.Store.GetApplication(ctx, parentID)
	if err != nil {
		return Application{}, fmt.Errorf("change request: %w", err)
	}
	if parent.IntegratorUID != integratorUID {
		return Application{}, fmt.Errorf("change request: %w", store.ErrNotFound)
	}
	if parent.Status != StatusApproved || parent.ProductionClientID == "" {
		return Application{}, conflict("Only a live (approved) application can be changed.")
	}
	if err := validateInput(&in); err != nil {
		return Application{}, err
	}
	if _, err := s.ClientStore.UpdateClient(ctx, parent.SandboxClientID, func(c *idp.Client) error {
		applySettings(c, in, in.Scopes)
		c.UpdatedAt = s.now()
		return nil
	}); err != nil {
		return Application{}, fmt.Errorf("change request: sandbox: %w", err)
	}
	id, err := s.token(12)
	if err != nil {
		return Application{}, err
	}
	now := s.now()
	a := Application{ID: id, Kind: KindChange, IntegratorUID: integratorUID, ParentID: parentID, Input: in,
		Status: StatusSubmitted, SandboxClientID: parent.SandboxClientID, ProductionClientID: parent.ProductionClientID,
		CreatedAt: now, UpdatedAt: now,
		History: []Event{{At: now, Actor: who.ID, Action: "change_requested", Detail: "live client " + parent.ProductionClientID}}}
	if err := s.Store.CreateApplication(ctx, a); err != nil {
		return Application{}, fmt.Errorf("change request: %w", err)
	}
	if err := s.record(ctx, who, &a, "change_requested", a.ProductionClientID); err != nil {
		return Application{}, err
	}
	return a, nil
}

// Get returns an application; an integrator sees only their own.
func (s *Service) Get(ctx context.Context, id, integratorUID string) (Application, error) {
	a, err := s.Store.GetApplication(ctx, id)
	if err != nil {
		return a, fmt.Errorf("get application: %w", err)
	}
	if integratorUID != "" && a.IntegratorUID != integratorUID {
		return Application{}, fmt.Errorf("get application: %w", store.ErrNotFound)
	}
	return a, nil
}

// Queue lists applications waiting for reviewers, oldest first.
func (s *Service) Queue(ctx context.Context) ([]Application, error) {
	return s.Store.ListApplications(ctx, Filter{Statuses: []string{StatusSubmitted, StatusQuestions, StatusDeferred}})
}

// Mine lists an integrator's applications.
func (s *Service) Mine(ctx context.Context, integratorUID string) ([]Application, error) {
	return s.Store.ListApplications(ctx, Filter{IntegratorUID: integratorUID})
}

func reviewable(a *Application, who Actor) error {
	if !a.InQueue() {
		return conflict("This application has been decided.")
	}
	if who.UID != "" && who.UID == a.IntegratorUID {
		return forbidden("You cannot review your own application.")
	}
	return nil
}

// Ask adds a reviewer's question; the integrator sees it and answers.
func (s *Service) Ask(ctx context.Context, who Actor, id, text string) (Application, error) {
	text = strings.TrimSpace(text)
	if text == "" || len(text) > 4000 {
		return Application{}, invalid("text: required, at most 4000 characters")
	}
	qid, err := s.token(9)
	if err != nil {
		return Application{}, err
	}
	a, err := s.Store.UpdateApplication(ctx, id, func(a *Application) error {
		if err := reviewable(a, who); err != nil {
			return err
		}
		now := s.now()
		a.Questions = append(a.Questions, Question{ID: qid, Text: text, AskedBy: who.ID, AskedAt: now})
		a.Status = StatusQuestions
		a.UpdatedAt = now
		a.History = append(a.History, Event{At: now, Actor: who.ID, Action: "question_asked", Detail: text})
		return nil
	})
	if err != nil {
		return a, fmt.Errorf("ask: %w", err)
	}
	return a, s.record(ctx, who, &a, "question_asked", "")
}

// Answer records the integrator's answer to a question.
func (s *Service) Answer(ctx context.Context, who Actor, integratorUID, id, questionID, text string) (Application, error) {
	text = strings.TrimSpace(text)
	if text == "" || len(text) > 4000 {
		return Application{}, invalid("answer: required, at most 4000 characters")
	}
	a, err := s.Store.UpdateApplication(ctx, id, func(a *Application) error {
		if a.IntegratorUID != integratorUID {
			return store.ErrNotFound
		}
		i := slices.IndexFunc(a.Questions, func(q Question) bool { return q.ID == questionID })
		if i < 0 {
			return store.ErrNotFound
		}
		if !a.Questions[i].AnsweredAt.IsZero() {
			return conflict("This question has been answered.")
		}
		now := s.now()
		a.Questions[i].Answer, a.Questions[i].AnsweredAt = text, now
		if a.OpenQuestions() == 0 && a.Status == StatusQuestions {
			a.Status = StatusSubmitted
		}
		a.UpdatedAt = now
		a.History = append(a.History, Event{At: now, Actor: who.ID, Action: "question_answered", Detail: text})
		return nil
	})
	if err != nil {
		return a, fmt.Errorf("answer: %w", err)
	}
	return a, s.record(ctx, who, &a, "question_answered", "")
}

// SignOff records a reviewer's explicit acceptance of one required item.
func (s *Service) SignOff(ctx context.Context, who Actor, id, item, note string) (Application, error) {
	a, err := s.Store.UpdateApplication(ctx, id, func(a *Application) error {
		if err := reviewable(a, who); err != nil {
			return err
		}
		if !slices.Contains(a.RequiredSignOffs(a.Scopes), item) {
			return invalid(fmt.Sprintf("item: %q does not need a sign-off here (needed: %s)", clip(item), strings.Join(a.RequiredSignOffs(a.Scopes), ", ")))
		}
		if slices.ContainsFunc(a.SignOffs, func(s SignOff) bool { return s.Item == item }) {
			return nil
		}
		now := s.now()
		a.SignOffs = append(a.SignOffs, SignOff{Item: item, Note: strings.TrimSpace(note), By: who.ID, At: now})
		a.UpdatedAt = now
		a.History = append(a.History, Event{At: now, Actor: who.ID, Action: "signed_off", Detail: item})
		return nil
	})
	if err != nil {
		return a, fmt.Errorf("sign off: %w", err)
	}
	return a, s.record(ctx, who, &a, "signed_off:"+item, "")
}

// DecisionInput is a reviewer's decision.
type DecisionInput struct {
	Outcome string `json:"outcome"`
	Reasons string `json:"reasons"`
	// ApprovedScopes (approval only) narrow the requested scopes; empty
	// means all requested.
	ApprovedScopes []string `json:"approved_scopes,omitempty"`
}

// Decided is a decision's result: the application and, once, a new
// production client's secret.
type Decided struct {
	Application      Application `json:"application"`
	ProductionClient *idp.Client `json:"production_client,omitempty"`
	ClientSecret     string      `json:"production_client_secret,omitempty"`
}

// Decide records approved, rejected or deferred with reasons. Approval
// needs every required sign-off and no open question, and issues the
// production client with exactly the approved scopes (or, for a change
// request, applies them to the live client). Rejection disables the sandbox
// client of a new application; deferral keeps the sandbox client only.
func (s *Service) Decide(ctx context.Context, who Actor, id string, in DecisionInput) (Decided, error) {
	in.Reasons = strings.TrimSpace(in.Reasons)
	if in.Outcome != StatusApproved && in.Outcome != StatusRejected && in.Outcome != StatusDeferred {
		return Decided{}, invalid("outcome: approved, rejected or deferred")
	}
	if in.Reasons == "" || len(in.Reasons) > 4000 {
		return Decided{}, invalid("reasons: required, at most 4000 characters")
	}
	cur, err := s.Store.GetApplication(ctx, id)
	if err != nil {
		return Decided{}, fmt.Errorf("decide: %w", err)
	}
	if err := reviewable(&cur, who); err != nil {
		return Decided{}, err
	}
	scopes := cur.Scopes
	if in.Outcome == StatusApproved {
		if len(in.ApprovedScopes) > 0 {
			scopes = nil
			for _, sc := range in.ApprovedScopes {
				if !slices.Contains(cur.Scopes, sc) {
					return Decided{}, invalid(fmt.Sprintf("approved_scopes: %q was not requested", clip(sc)))
				}
				scopes = append(scopes, sc)
			}
			if !slices.Contains(scopes, "openid") {
				scopes = append([]string{"openid"}, scopes...)
			}
		}
		if missing := cur.MissingSignOffs(scopes); len(missing) > 0 {
			return Decided{}, apierror.New(http.StatusConflict, "sign_off_required",
				"These need an explicit reviewer sign-off first: "+strings.Join(missing, ", "), nil)
		}
		if cur.OpenQuestions() > 0 {
			return Decided{}, conflict("The integrator has not answered every question.")
		}
	}

	var out Decided
	client := ""
	switch {
	case in.Outcome == StatusApproved && cur.Kind == KindChange:
		client = cur.ProductionClientID
		if _, err := s.ClientStore.UpdateClient(ctx, client, func(c *idp.Client) error {
			applySettings(c, cur.Input, scopes)
			c.UpdatedAt = s.now()
			return nil
		}); err != nil {
			return Decided{}, fmt.Errorf("decide: live client: %w", err)
		}
	case in.Outcome == StatusApproved:
		prod := clientFor(cur.Input, policy.EnvironmentProduction, scopes)
		secret, err := s.Clients.RegisterClient(ctx, prod)
		if err != nil {
			return Decided{}, fmt.Errorf("decide: production client: %w", err)
		}
		out.ProductionClient, out.ClientSecret, client = prod, secret, prod.ID
	case in.Outcome == StatusRejected && cur.Kind == KindNew:
		client = cur.SandboxClientID
		if _, err := s.ClientStore.UpdateClient(ctx, client, func(c *idp.Client) error {
			c.Disabled = true
			c.UpdatedAt = s.now()
			return nil
		}); err != nil {
			return Decided{}, fmt.Errorf("decide: disable sandbox: %w", err)
		}
	}
	a, err := s.Store.UpdateApplication(ctx, id, func(a *Application) error {
		if err := reviewable(a, who); err != nil {
			return err
		}
		now := s.now()
		d := &Decision{Outcome: in.Outcome, Reasons: in.Reasons, By: who.ID, At: now}
		if in.Outcome == StatusApproved {
			d.ApprovedScopes = scopes
			if a.Kind == KindNew {
				a.ProductionClientID = client
			}
		}
		a.Decision, a.Status, a.UpdatedAt = d, in.Outcome, now
		a.History = append(a.History, Event{At: now, Actor: who.ID, Action: "decided:" + in.Outcome, Detail: in.Reasons})
		return nil
	})
	if err != nil {
		return Decided{}, fmt.Errorf("decide: %w", err)
	}
	out.Application = a
	return out, s.record(ctx, who, &a, "decided:"+in.Outcome, client)
}
