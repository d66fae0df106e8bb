package loadgen

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	crewjam "github.com/crewjam/saml"
	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"
)

// Scenario names.
const (
	Login             = "login"
	ClientCredentials = "client_credentials"
	Refresh           = "refresh"
	Introspect        = "introspect"
	Userinfo          = "userinfo"
	Mixed             = "mixed"
)

// Scenarios lists every scenario Run accepts, in report order.
var Scenarios = []string{Login, ClientCredentials, Refresh, Introspect, Userinfo, SAMLSSO, Mixed}

// mixWeights is the mixed blend: mostly resource servers checking tokens,
// some sign-ins and renewals (per 100 iterations).
var mixWeights = []struct {
	op     string
	weight int
}{{Introspect, 50}, {Userinfo, 15}, {Refresh, 15}, {ClientCredentials, 10}, {Login, 10}}

// endpoints are the URLs from discovery.
type endpoints struct {
	Authorize  string `json:"authorization_endpoint"`
	Token      string `json:"token_endpoint"`
	Userinfo   string `json:"userinfo_endpoint"`
	Introspect string `json:"introspection_endpoint"`
}

// shared is what all virtual clients of one run share.
type shared struct {
	st          *State
	ep          endpoints
	api         *http.Client // discovery and metadata: no cookies, no redirects
	users       chan *User   // checked out by one sign-in at a time
	issuer      *url.URL
	newDevices  bool   // see Options.NewDevices
	refreshAuth string // see Options.RefreshAuth
	sp          *crewjam.ServiceProvider
}

// vclient is one virtual client: its own tokens and signer.
type vclient struct {
	sh      *shared
	rt      http.RoundTripper // its connection (connTransport), or the shared transport
	api     *http.Client      // rt with no cookies, no redirects
	signer  jose.Signer
	access  string // a user's access token (userinfo)
	refresh string // a user's refresh token (rotated on each use)
	ccToken string // a client_credentials token (introspect)
	page    []byte // the body of the page follow stopped at
	reqs    int    // HTTP requests made, for the summary
}

func newShared(ctx context.Context, st *State, rt http.RoundTripper, conc int) (*shared, error) {
	if err := st.prepare(); err != nil {
		return nil, err
	}
	sh := &shared{st: st, api: apiClient(rt)}
	var err error
	if sh.issuer, err = url.Parse(st.Issuer); err != nil {
		return nil, fmt.Errorf("loadgen: issuer: %w", err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, st.Issuer+"/.well-known/openid-configuration", nil)
	_, body, err := do(sh.api, "discovery", req)
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	if err := json.Unmarshal(body, &sh.ep); err != nil || sh.ep.Token == "" {
		return nil, fmt.Errorf("loadgen: discovery: bad document: %v", err)
	}
	for _, u := range []string{sh.ep.Authorize, sh.ep.Token, sh.ep.Userinfo, sh.ep.Introspect} {
		if err := CheckLoopback(u); err != nil {
			return nil, err
		}
	}
	// Signature counters must grow across runs, but runs do not save the
	// devices: start every counter from the time since setup (1,000 per
	// second, more than any one person signs in).
	base := uint32(time.Since(st.Created).Seconds()) * 1000
	for i := range st.Users {
		if d := st.Users[i].Device; d != nil && d.Cred.Counter < base {
			d.Cred.Counter = base
		}
	}
	sh.users = make(chan *User, len(st.Users))
	// Shuffle so that concurrent runs do not walk users in the same order.
	for _, i := range mrand.Perm(len(st.Users)) {
		sh.users <- &st.Users[i]
	}
	return sh, nil
}

func (sh *shared) newClient(rt http.RoundTripper) (*vclient, error) {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: sh.st.RP.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", sh.st.RP.KeyID))
	if err != nil {
		return nil, fmt.Errorf("loadgen: signer: %w", err)
	}
	return &vclient{sh: sh, rt: rt, api: apiClient(rt), signer: sig}, nil
}

// prepare gives the client what its scenario needs before timing starts.
func (c *vclient) prepare(ctx context.Context, scenario string) error {
	switch scenario {
	case Refresh, Mixed:
		tok, err := c.login(ctx, c.sh.refreshAuth)
		if err != nil {
			return err
		}
		c.access, c.refresh = tok.AccessToken, tok.RefreshToken
	case Userinfo:
		tok, err := c.login(ctx, AuthPrivateKeyJWT)
		if err != nil {
			return err
		}
		c.access = tok.AccessToken
	}
	switch scenario {
	case Introspect, Mixed:
		tok, err := c.clientCredentials(ctx)
		if err != nil {
			return err
		}
		c.ccToken = tok
	}
	return nil
}

// run does one iteration of scenario (for mixed, one weighted pick) and
// returns the operation it ran.
func (c *vclient) run(ctx context.Context, scenario string, rnd *mrand.Rand) (string, error) {
	op := scenario
	if scenario == Mixed {
		n := rnd.IntN(100)
		for _, w := range mixWeights {
			if n < w.weight {
				op = w.op
				break
			}
			n -= w.weight
		}
	}
	var err error
	switch op {
	case Login:
		_, err = c.login(ctx, AuthPrivateKeyJWT)
	case ClientCredentials:
		_, err = c.clientCredentials(ctx)
	case Refresh:
		err = c.refreshOnce(ctx)
	case Introspect:
		err = c.introspect(ctx)
	case Userinfo:
		err = c.userinfo(ctx)
	case SAMLSSO:
		err = c.samlSSO(ctx)
	default:
		err = fmt.Errorf("loadgen: unknown scenario %q", op)
	}
	return op, err
}

func randString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// clientID is the web client that authenticates with auth.
func (c *vclient) clientID(auth string) string {
	if auth == AuthSecretBasic {
		return c.sh.st.WebSecret.ID
	}
	return c.sh.st.RP.ID
}

// tokenRequest posts form to the token endpoint as the web client that
// authenticates with auth, and decodes the reply into out.
func (c *vclient) tokenRequest(ctx context.Context, step, auth string, form url.Values, out any) error {
	c.reqs++
	if auth == AuthSecretBasic {
		ws := c.sh.st.WebSecret
		return postForm(ctx, c.api, step, c.sh.ep.Token, form, ws.ID, ws.Secret, out)
	}
	a, err := c.assertion()
	if err != nil {
		return &OpError{Step: step, Err: err}
	}
	form.Set("client_id", c.sh.st.RP.ID)
	form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
	form.Set("client_assertion", a)
	return postForm(ctx, c.api, step, c.sh.ep.Token, form, "", "", out)
}

// assertion is a private_key_jwt client assertion for the token endpoint.
func (c *vclient) assertion() (string, error) {
	now := time.Now()
	id := c.sh.st.RP.ID
	return jwt.Signed(c.signer).Claims(jwt.Claims{Issuer: id, Subject: id, Audience: jwt.Audience{c.sh.ep.Token},
		ID: randString(16), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute))}).CompactSerialize()
}

type tokenReply struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	TokenType    string `json:"token_type"`
}

// takeUser checks a person out of the pool, one sign-in at a time.
func (c *vclient) takeUser(ctx context.Context) (*User, error) {
	select {
	case u := <-c.sh.users:
		return u, nil
	case <-ctx.Done():
		return nil, &OpError{Step: "login/user", Err: ctx.Err()}
	}
}

func (c *vclient) giveUser(u *User) { c.sh.users <- u }

// ceremony runs the WebAuthn sign-in for the flow at loginURL and returns
// the finish reply's redirect.
func (c *vclient) ceremony(ctx context.Context, b *http.Client, u *User, loginURL *url.URL) (string, error) {
	flow := loginURL.Query().Get("flow")
	if flow == "" {
		return "", &OpError{Step: "login", Status: 200, Err: errors.New("no flow")}
	}
	iss := c.sh.st.Issuer
	c.reqs++
	opts, err := postJSON(ctx, b, "login/begin", iss+"/webauthn/login/begin", map[string]string{"flow": flow})
	if err != nil {
		return "", err
	}
	as, err := u.Device.Assert(opts)
	if err != nil {
		return "", &OpError{Step: "login/assert", Status: 200, Err: err}
	}
	c.reqs++
	raw, err := postJSON(ctx, b, "login/finish", iss+"/webauthn/login/finish?flow="+url.QueryEscape(flow), as)
	if err != nil {
		return "", err
	}
	var fin struct {
		Redirect string `json:"redirect"`
	}
	if err := json.Unmarshal(raw, &fin); err != nil || fin.Redirect == "" {
		return "", &OpError{Step: "login/finish", Status: 200, Err: errors.New("no redirect"), Body: clip(raw)}
	}
	return fin.Redirect, nil
}

// login is the whole interactive sign-in of one person with a fresh
// browser: authorize → login page → WebAuthn assertion → (role choice) →
// code → token exchange, as the web client that authenticates with auth
// (AuthPrivateKeyJWT, the login scenario's, or AuthSecretBasic). It
// returns the tokens.
func (c *vclient) login(ctx context.Context, auth string) (*tokenReply, error) {
	u, err := c.takeUser(ctx)
	if err != nil {
		return nil, err
	}
	defer c.giveUser(u)
	b := c.userBrowser(u)
	st := c.sh.st
	state, nonce, verifier := randString(12), randString(12), randString(32)
	sum := sha256.Sum256([]byte(verifier))
	clientID := c.clientID(auth)
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {st.RP.RedirectURI},
		"scope": {st.RP.Scope}, "state": {state}, "nonce": {nonce},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	loc, err := c.follow(ctx, b, "authorize", c.sh.ep.Authorize+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	if loc.Path != "/login" {
		return nil, &OpError{Step: "authorize", Status: 200, Err: fmt.Errorf("expected /login, got %s", loc.Path)}
	}
	redirect, err := c.ceremony(ctx, b, u, loc)
	if err != nil {
		return nil, err
	}
	loc, err = c.follow(ctx, b, "resume", redirect)
	if err != nil {
		return nil, err
	}
	if loc.Path == "/select-role" {
		if loc, err = c.selectRole(ctx, b, loc); err != nil {
			return nil, err
		}
	}
	cb := loc.Query()
	if !strings.HasPrefix(loc.String(), st.RP.RedirectURI) || cb.Get("code") == "" {
		return nil, &OpError{Step: "callback", Status: 200, Code: cb.Get("error"), Err: fmt.Errorf("no code at %s", loc.Redacted())}
	}
	if cb.Get("state") != state {
		return nil, &OpError{Step: "callback", Status: 200, Err: errors.New("state mismatch")}
	}
	var tok tokenReply
	err = c.tokenRequest(ctx, "token(code)", auth, url.Values{
		"grant_type": {"authorization_code"}, "code": {cb.Get("code")}, "redirect_uri": {st.RP.RedirectURI},
		"code_verifier": {verifier}}, &tok)
	if err != nil {
		return nil, err
	}
	if tok.AccessToken == "" || tok.IDToken == "" || tok.RefreshToken == "" {
		return nil, &OpError{Step: "token(code)", Status: 200, Err: errors.New("missing access, refresh or ID token")}
	}
	c.keepDevice(u, b)
	return &tok, nil
}

// follow GETs u and follows redirects while they stay on nhsid; it
// returns the first URL that leaves nhsid or answers 200.
func (c *vclient) follow(ctx context.Context, b *http.Client, step, u string) (*url.URL, error) {
	base, _ := url.Parse(c.sh.st.Issuer)
	cur, err := base.Parse(u)
	if err != nil {
		return nil, &OpError{Step: step, Err: err}
	}
	c.page = nil
	for i := 0; i < 10; i++ {
		if cur.Host != base.Host {
			return cur, nil
		}
		if cur.Path == "/login" || cur.Path == "/select-role" {
			// Pages a browser would render: the ceremony uses the JSON API.
			return cur, nil
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cur.String(), nil)
		c.reqs++
		resp, body, err := do(b, step, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode < 300 || resp.StatusCode >= 400 {
			c.page = body
			return cur, nil
		}
		next, err := cur.Parse(resp.Header.Get("Location"))
		if err != nil {
			return nil, &OpError{Step: step, Status: resp.StatusCode, Err: err}
		}
		cur = next
	}
	return nil, &OpError{Step: step, Status: 302, Err: errors.New("too many redirects")}
}

// selectRole renders the role page, chooses the first role and follows on.
func (c *vclient) selectRole(ctx context.Context, b *http.Client, loc *url.URL) (*url.URL, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, loc.String(), nil)
	c.reqs++
	_, page, err := do(b, "select-role", req)
	if err != nil {
		return nil, err
	}
	csrf := csrfField.FindSubmatch(page)
	role := roleField.FindSubmatch(page)
	if csrf == nil || role == nil {
		return nil, &OpError{Step: "select-role", Status: 200, Err: errors.New("no form on page")}
	}
	rv := string(role[1])
	if rv == "" {
		rv = string(role[2])
	}
	form := url.Values{"flow": {loc.Query().Get("flow")}, "role": {rv}, string(csrf[1]): {string(csrf[2])}}
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, c.sh.st.Issuer+"/select-role", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	c.reqs++
	resp, _, err := do(b, "select-role", req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusFound {
		return nil, &OpError{Step: "select-role", Status: resp.StatusCode, Err: errors.New("no redirect")}
	}
	return c.follow(ctx, b, "resume", resp.Header.Get("Location"))
}

func (c *vclient) clientCredentials(ctx context.Context) (string, error) {
	var tok tokenReply
	c.reqs++
	err := postForm(ctx, c.api, "token(client_credentials)", c.sh.ep.Token, url.Values{"grant_type": {"client_credentials"}},
		c.sh.st.Service.ID, c.sh.st.Service.Secret, &tok)
	if err != nil {
		return "", err
	}
	if tok.AccessToken == "" {
		return "", &OpError{Step: "token(client_credentials)", Status: 200, Err: errors.New("no access token")}
	}
	return tok.AccessToken, nil
}

func (c *vclient) refreshOnce(ctx context.Context) error {
	var tok tokenReply
	err := c.tokenRequest(ctx, "token(refresh)", c.sh.refreshAuth, url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {c.refresh}}, &tok)
	if err != nil {
		return err
	}
	if tok.RefreshToken == "" || tok.RefreshToken == c.refresh || tok.AccessToken == "" {
		return &OpError{Step: "token(refresh)", Status: 200, Err: errors.New("refresh token did not rotate")}
	}
	c.refresh, c.access = tok.RefreshToken, tok.AccessToken
	return nil
}

func (c *vclient) introspect(ctx context.Context) error {
	var out struct {
		Active bool `json:"active"`
	}
	c.reqs++
	err := postForm(ctx, c.api, "introspect", c.sh.ep.Introspect, url.Values{"token": {c.ccToken}},
		c.sh.st.Service.ID, c.sh.st.Service.Secret, &out)
	if err != nil {
		return err
	}
	if !out.Active {
		return &OpError{Step: "introspect", Status: 200, Code: "inactive"}
	}
	return nil
}

func (c *vclient) userinfo(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.sh.ep.Userinfo, nil)
	req.Header.Set("Authorization", "Bearer "+c.access)
	c.reqs++
	_, body, err := do(c.api, "userinfo", req)
	if err != nil {
		return err
	}
	var out struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.Sub == "" {
		return &OpError{Step: "userinfo", Status: 200, Err: errors.New("no sub"), Body: clip(body)}
	}
	return nil
}
