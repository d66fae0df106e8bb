package loadgen

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/nhsid/nhsid/internal/webauthntest"
)

// State is what Setup made and every run needs: the clients and the
// enrolled people with their software authenticators. It is saved as JSON
// (it holds private keys of throwaway test credentials only).
type State struct {
	Issuer   string       `json:"issuer"`
	AdminURL string       `json:"admin_url"`
	Created  time.Time    `json:"created"`
	RP       RPClient     `json:"rp"`
	Service  SecretClient `json:"service"`
	// WebSecret is a confidential web client like RP that authenticates
	// with client_secret_basic (nil in state files from before it).
	WebSecret *SecretClient `json:"web_secret,omitempty"`
	// SAML is the registered service provider (nil if registration failed).
	SAML  *SAMLProvider `json:"saml,omitempty"`
	Users []User        `json:"users"`
}

// RPClient is a confidential web client with private_key_jwt (ES256).
type RPClient struct {
	ID          string `json:"client_id"`
	KeyPEM      string `json:"key_pem"`
	KeyID       string `json:"kid"`
	RedirectURI string `json:"redirect_uri"`
	Scope       string `json:"scope"`

	key *ecdsa.PrivateKey
}

// SecretClient is a client_secret_basic client for client_credentials and
// introspection (a resource server).
type SecretClient struct {
	ID     string `json:"client_id"`
	Secret string `json:"client_secret"`
}

// User is one enrolled person and the authenticator holding their passkey.
type User struct {
	UID    string               `json:"uid"`
	Device *webauthntest.Device `json:"device"`
	// BrowserDevice is the device cookie the person's browser kept from
	// its last sign-in; `run` saves it back to the state file, so that the
	// next run's browsers are the same returning ones (as a clinician's
	// workstation is), not new devices that fill every risk profile.
	BrowserDevice *BrowserCookie `json:"browser_device,omitempty"`
}

// BrowserCookie is a cookie a person's browser keeps.
type BrowserCookie struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// SetupOptions configure Setup.
type SetupOptions struct {
	Issuer     string // public base URL of nhsid (loopback)
	AdminURL   string // admin listener base URL (loopback)
	AdminToken string // bearer token for the admin API
	Users      int    // people to enrol
	// Concurrency of the enrolment requests (default 8).
	Concurrency int
	// Transport, when set, replaces the HTTP transport (tests).
	Transport http.RoundTripper
}

const rpScope = "openid profile email nhsperson professionalmemberships offline_access"

// Setup registers the clients and enrols opts.Users people through the
// admin API (person, invite) and the JSON ceremony API (register
// begin/finish with a software authenticator), as an RA and the people
// themselves would.
func Setup(ctx context.Context, opts SetupOptions) (*State, error) {
	if err := CheckLoopback(opts.Issuer); err != nil {
		return nil, err
	}
	if err := CheckLoopback(opts.AdminURL); err != nil {
		return nil, err
	}
	if opts.Users <= 0 || opts.Users > MaxUsers {
		return nil, fmt.Errorf("loadgen: setup: users must be 1..%d", MaxUsers)
	}
	if opts.AdminToken == "" {
		return nil, errors.New("loadgen: setup: no admin token (set NHSID_TOKEN)")
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	rt := opts.Transport
	if rt == nil {
		rt = newTransport(opts.Concurrency)
	}
	adm := &adminClient{base: opts.AdminURL, token: opts.AdminToken, http: &http.Client{Transport: rt, Timeout: 30 * time.Second}}
	st := &State{Issuer: opts.Issuer, AdminURL: opts.AdminURL, Created: time.Now().UTC()}

	// Clients.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("loadgen: setup: %w", err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	st.RP = RPClient{KeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), KeyID: "load-1",
		RedirectURI: "http://127.0.0.1:9/callback", Scope: rpScope, key: key}
	var out struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	err = adm.call(ctx, "POST", "/admin/v1/clients", map[string]any{
		"client_name":                     "nhsid-load rp",
		"redirect_uris":                   []string{st.RP.RedirectURI},
		"grant_types":                     []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_method":      "private_key_jwt",
		"token_endpoint_auth_signing_alg": "ES256",
		"scope":                           rpScope,
		"jwks":                            jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: st.RP.KeyID, Algorithm: "ES256", Use: "sig"}}},
	}, &out)
	if err != nil {
		return nil, fmt.Errorf("loadgen: setup: register rp: %w", err)
	}
	st.RP.ID = out.ClientID
	err = adm.call(ctx, "POST", "/admin/v1/clients", map[string]any{
		"client_name":                "nhsid-load rp (secret)",
		"redirect_uris":              []string{st.RP.RedirectURI},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_method": "client_secret_basic",
		"scope":                      rpScope,
	}, &out)
	if err != nil {
		return nil, fmt.Errorf("loadgen: setup: register rp (secret): %w", err)
	}
	st.WebSecret = &SecretClient{ID: out.ClientID, Secret: out.ClientSecret}
	err = adm.call(ctx, "POST", "/admin/v1/clients", map[string]any{
		"client_name":                "nhsid-load service",
		"redirect_uris":              []string{},
		"grant_types":                []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic",
		"scope":                      "",
	}, &out)
	if err != nil {
		return nil, fmt.Errorf("loadgen: setup: register service client: %w", err)
	}
	st.Service = SecretClient{ID: out.ClientID, Secret: out.ClientSecret}
	sp, meta, err := newSAMLProvider()
	if err != nil {
		return nil, fmt.Errorf("loadgen: setup: saml provider: %w", err)
	}
	if err := registerSAML(ctx, adm, meta); err != nil {
		return nil, fmt.Errorf("loadgen: setup: register saml provider: %w", err)
	}
	st.SAML = sp

	// People.
	iss, _ := url.Parse(opts.Issuer)
	run := make([]byte, 4)
	_, _ = rand.Read(run)
	tag := hex.EncodeToString(run)
	st.Users = make([]User, opts.Users)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for w := 0; w < opts.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				u, err := enrolOne(ctx, adm, rt, opts.Issuer, iss.Hostname(), fmt.Sprintf("%s%05d", tag, i))
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				st.Users[i] = u
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < opts.Users; i++ {
		mu.Lock()
		stop := first != nil
		mu.Unlock()
		if stop || ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		return nil, fmt.Errorf("loadgen: setup: enrol: %w", first)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("loadgen: setup: %w", err)
	}
	return st, nil
}

func enrolOne(ctx context.Context, adm *adminClient, rt http.RoundTripper, issuer, rpID, tag string) (User, error) {
	var p struct {
		UID string `json:"uid"`
	}
	if err := adm.call(ctx, "POST", "/admin/v1/people", map[string]any{
		"given_name": "Load", "family_name": "Tester " + tag,
		"email": "load." + tag + "@example.nhs.uk", "id_assurance_level": 3,
	}, &p); err != nil {
		return User{}, fmt.Errorf("create person: %w", err)
	}
	var inv struct {
		Code string `json:"code"`
	}
	if err := adm.call(ctx, "POST", "/admin/v1/people/"+p.UID+"/invites", nil, &inv); err != nil {
		return User{}, fmt.Errorf("invite: %w", err)
	}
	dev := webauthntest.NewDevice(rpID, issuer, nil)
	c := browserClient(rt)
	opts, err := postJSON(ctx, c, "register/begin", issuer+"/webauthn/register/begin", map[string]string{"invite": inv.Code})
	if err != nil {
		return User{}, err
	}
	att, err := dev.Register(opts)
	if err != nil {
		return User{}, fmt.Errorf("device register: %w", err)
	}
	if _, err := postJSON(ctx, c, "register/finish", issuer+"/webauthn/register/finish?invite="+url.QueryEscape(inv.Code), att); err != nil {
		return User{}, err
	}
	return User{UID: p.UID, Device: dev}, nil
}

type adminClient struct {
	base, token string
	http        *http.Client
}

func (a *adminClient) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	resp, raw, err := do(a.http, "admin "+path, req)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return &OpError{Step: "admin " + path, Status: resp.StatusCode, Body: clip(raw)}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("admin %s: decode: %w", path, err)
		}
	}
	return nil
}

// Save writes the state to path (mode 0600).
func (s *State) Save(path string) error {
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return fmt.Errorf("loadgen: save state: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("loadgen: save state: %w", err)
	}
	return nil
}

// LoadState reads a state file written by Save.
func LoadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loadgen: load state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("loadgen: load state %s: %w", path, err)
	}
	if err := s.prepare(); err != nil {
		return nil, err
	}
	return &s, nil
}

// prepare parses the RP key and checks the targets.
func (s *State) prepare() error {
	if err := CheckLoopback(s.Issuer); err != nil {
		return err
	}
	if s.RP.key == nil {
		blk, _ := pem.Decode([]byte(s.RP.KeyPEM))
		if blk == nil {
			return errors.New("loadgen: state: no rp key")
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return fmt.Errorf("loadgen: state: rp key: %w", err)
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return errors.New("loadgen: state: rp key is not ECDSA")
		}
		s.RP.key = ek
	}
	if len(s.Users) == 0 {
		return errors.New("loadgen: state: no users")
	}
	return nil
}
