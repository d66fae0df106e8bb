package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-webauthn/webauthn/protocol"
	"golang.org/x/oauth2"

	"github.com/nhsid/nhsid/internal/config"
	"github.com/nhsid/nhsid/policy"
)

// TestRAConsoleBrowser walks the RA console in headless Chromium. The
// virtual authenticator attests with a self-signed certificate over a
// publicly known key, so its certificate is learnt by registering once and
// trusted as a TEST-ONLY anchor in this server's config (never in dev or
// production config: TestRAConsoleAnchorNotInDefaults-style checks run
// here on the certificate just learnt). An RA Manager enrols at AAL3, signs
// in to /ra/, creates a person, assigns two positions and issues an invite
// (link and QR code); the person enrols with that link in a fresh browser
// state and picks a role on the role-selection page of an RP asking for
// selectedrole.
func TestRAConsoleBrowser(t *testing.T) {
	ctx := newChromium(t)
	console := collectConsole(t, ctx)
	authID := addVirtualAuthenticator(t, ctx)

	// 1. The virtual authenticator's attestation certificate.
	cert := chromiumAttestationCert(t, ctx)
	t.Logf("Chromium virtual authenticator attestation: subject %q, self-signed %v", cert.Subject, cert.Subject.String() == cert.Issuer.String())
	t.Run("test anchor is not in dev or example config", func(t *testing.T) {
		assertNotTrustedByDefault(t, cert)
	})
	authID = replaceAuthenticator(t, ctx, authID)
	anchor := filepath.Join(t.TempDir(), "chromium-virtual-authenticator-TEST-ONLY.pem")
	if err := os.WriteFile(anchor, chromiumTestAnchor(t, cert), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "memory", func(c *config.Config) {
		c.WebAuthn.TrustAnchors = append(c.WebAuthn.TrustAnchors, anchor)
	})

	// 2. Operator setup: catalogue, organisations and the first RA Manager.
	e.admin("POST", "/admin/v1/roles", policy.SampleCatalogue(), 201, nil)
	e.admin("POST", "/admin/v1/organisations", map[string]string{"code": "RXA", "name": "Alpha NHS Trust"}, 201, nil)
	e.admin("POST", "/admin/v1/organisations", map[string]string{"code": "RXA01", "name": "Alpha General Hospital", "parent_code": "RXA"}, 201, nil)
	raUID := e.newPerson("Rita", "Manager")
	e.admin("POST", "/admin/v1/people/"+raUID+"/positions", map[string]any{"org_code": "RXA", "role_code": policy.SampleRAManager}, 201, nil)
	var inv struct{ URL string }
	e.admin("POST", "/admin/v1/people/"+raUID+"/invites", nil, 201, &inv)

	shots, err := os.MkdirTemp("", "nhsid-e2e-ra-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", shots)

	// 3. The RA enrols at AAL3 and signs in to the console.
	if got := browserEnrol(t, ctx, inv.URL); !strings.Contains(got, "AAL3") {
		t.Fatalf("RA enrolment: %q, want AAL3 (the test anchor should make the virtual authenticator high assurance)", got)
	}
	run(t, ctx, "open the RA console", chromedp.Navigate(e.issuer+"/ra/"))
	browserLogin(t, ctx)
	waitFor(t, ctx, "the RA console home", `(() => {
	  `+pageProblemJS+`
	  if (document.readyState !== "complete") { return ""; }
	  if (location.pathname === "/ra/" && document.getElementById("ra-search")) { return "ok"; }
	  return pageProblem(["/login", "/ra/"]);
	})()`)
	screenshot(t, ctx, filepath.Join(shots, "ra-home.png"))

	// 4. Create a person.
	run(t, ctx, "follow Create a person", chromedp.Click(chromedp.CSS(`a[href="/ra/people/new"]`)))
	waitFor(t, ctx, "the create form", `document.readyState === "complete" && document.getElementById("given_name") ? "ok" : ""`)
	run(t, ctx, "type the given name", chromedp.SendKeys(chromedp.ID("given_name"), "Nina"))
	run(t, ctx, "type the family name", chromedp.SendKeys(chromedp.ID("family_name"), "Nurse"))
	run(t, ctx, "type the email", chromedp.SendKeys(chromedp.ID("email"), "nina.nurse@example.nhs.uk"))
	submit(t, ctx, "create the person", "create-person")
	waitNotice(t, ctx, "The person was created")
	uid := strings.TrimSpace(text(t, ctx, "#person-uid"))
	if len(uid) != 12 {
		t.Fatalf("person uid %q", uid)
	}

	// 5. Assign two positions (the second at the child organisation).
	for _, p := range []struct{ org, role string }{{"RXA", policy.SampleNurseRole}, {"RXA01", policy.SampleAdminRole}} {
		run(t, ctx, "open Assign a position", chromedp.Click(chromedp.CSS(`#assign-details summary`)))
		run(t, ctx, "choose the organisation", chromedp.SetValue(chromedp.ID("assign-org"), p.org))
		run(t, ctx, "choose the role", chromedp.SetValue(chromedp.ID("assign-role"), p.role))
		submit(t, ctx, "assign", "assign-submit")
		waitNotice(t, ctx, "The position was assigned")
	}
	table := text(t, ctx, "#positions-table")
	for _, want := range []string{"Nurse Access Role", "Alpha NHS Trust", "Admin/Clinical Support Access Role", "Alpha General Hospital"} {
		if !strings.Contains(table, want) {
			t.Fatalf("positions table lacks %q: %s", want, table)
		}
	}
	screenshot(t, ctx, filepath.Join(shots, "ra-person.png"))

	// 6. Issue an invite: a copyable link and a QR code.
	submit(t, ctx, "issue an invite", "invite-submit")
	waitFor(t, ctx, "the invite page", `(() => {
	  if (document.readyState !== "complete" || document.documentElement.dataset.e2eSubmitted) { return ""; }
	  const qr = document.getElementById("invite-qr");
	  if (location.pathname.endsWith("/invite") && qr && qr.complete && qr.naturalWidth > 100) { return "ok"; }
	  if (location.pathname.endsWith("/invite") && document.readyState === "complete" && !qr) { return "error: no QR code: " + document.querySelector("main").textContent; }
	  return "";
	})()`)
	link := run(t, ctx, "read the invite link", chromedp.Evaluate[string](`document.getElementById("invite-url").value`))
	if !strings.HasPrefix(link, e.issuer+"/enrol?") {
		t.Fatalf("invite link %q", link)
	}
	if copyable := run(t, ctx, "copy button", chromedp.Evaluate[bool](`!document.getElementById("invite-copy").hidden`)); !copyable {
		t.Error("the Copy link button is hidden (ra.js did not run)")
	}
	screenshot(t, ctx, filepath.Join(shots, "ra-invite.png"))
	positions, err := e.srv.Policy.ActivePositions(context.Background(), uid)
	if err != nil || len(positions) != 2 {
		t.Fatalf("positions of %s: %v %+v", uid, err, positions)
	}
	want := positions[1].RoleID

	// 7. The person enrols with that link in a fresh browser state, and
	// picks a role when signing in to an RP asking for selectedrole.
	if _, err := chromedp.Call(ctx, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
		t.Fatalf("Network.clearBrowserCookies: %v", err)
	}
	authID = replaceAuthenticator(t, ctx, authID)
	browserEnrol(t, ctx, link)
	rp := e.newRP("private_key_jwt", map[string]any{"scope": "openid profile nationalrbacaccess associatedorgs selectedrole"})
	c := e.client(rp, "openid", "profile", "nationalrbacaccess", "associatedorgs", "selectedrole")
	state, nonce, verifier := randID(), randID(), oauth2.GenerateVerifier()
	run(t, ctx, "start the RP sign-in", chromedp.Navigate(c.conf.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))))
	browserLogin(t, ctx)
	waitFor(t, ctx, "the role selection page", `(() => {
	  `+pageProblemJS+`
	  if (document.readyState !== "complete") { return ""; }
	  if (location.pathname === "/select-role" && document.querySelector('input[name="role"]')) { return "ok"; }
	  return pageProblem(["/login", "/select-role", "/oauth2/auth", "/oauth2/authorize"]);
	})()`)
	page := text(t, ctx, "main")
	for _, p := range positions {
		if !strings.Contains(page, p.RoleID) {
			t.Fatalf("role selection page lacks %s: %s", p.RoleID, page)
		}
	}
	screenshot(t, ctx, filepath.Join(shots, "select-role.png"))
	run(t, ctx, "choose the second role", chromedp.Click(chromedp.ID("role-"+want)))
	run(t, ctx, "continue", chromedp.Click(chromedp.CSS(`form[action="/select-role"][method="post"] button[type="submit"]`)))
	cbURL := waitFor(t, ctx, "the RP callback", `(() => {
	  `+pageProblemJS+`
	  if (location.href.startsWith(`+jsString(rp.redirectURI)+`)) { return "ok " + location.href; }
	  if (document.readyState !== "complete") { return ""; }
	  return pageProblem(["/select-role", "/oauth2/auth", "/oauth2/authorize"]);
	})()`)
	cb, err := url.Parse(strings.TrimPrefix(cbURL, "ok "))
	if err != nil {
		t.Fatal(err)
	}
	_, _, claims := c.exchange(cb, state, verifier, nonce)
	mustEqual(t, "selected_roleid", claims["selected_roleid"], want)

	// 8. No JS exception and no CSP violation on any page.
	bad, other := consoleProblems(console.drain(t, ctx))
	for _, m := range other {
		t.Logf("browser console (not fatal): %s (%s)", m, m.URL)
	}
	for _, m := range bad {
		t.Errorf("browser console: %s (%s:%d)", m, m.URL, m.Line)
	}
}

// pageProblemJS defines pageProblem(paths) in the page: it describes an
// unexpected page (an error summary, a ceremony error, or a path not in
// paths), or returns "" to keep waiting.
const pageProblemJS = `function pageProblem(paths) {
  const err = document.getElementById("ceremony-error");
  if (err && !err.hidden) { return "error: " + err.textContent.replace(/\s+/g, " ").trim(); }
  const summary = document.querySelector(".nhsuk-error-summary:not([hidden])");
  if (summary) { return "error at " + location.pathname + ": " + summary.textContent.replace(/\s+/g, " ").trim(); }
  if (!paths.includes(location.pathname)) {
    return "error: stopped at " + location.pathname + ": " + document.title + ": " +
      (document.querySelector("main") || document.body).textContent.replace(/\s+/g, " ").trim().slice(0, 500);
  }
  return "";
}`

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

// submit marks the current document, then clicks the button with id, so
// that the waits after it see only the page the form leads to.
func submit(t *testing.T, ctx context.Context, what, id string) {
	t.Helper()
	run(t, ctx, "mark the page before "+what, chromedp.Evaluate[chromedp.Void](`document.documentElement.dataset.e2eSubmitted = "1"`))
	run(t, ctx, what, chromedp.Click(chromedp.ID(id)))
}

// waitNotice waits for a console page with the success message msg.
func waitNotice(t *testing.T, ctx context.Context, msg string) {
	t.Helper()
	waitFor(t, ctx, "the message "+msg, `(() => {
	  if (document.readyState !== "complete" || document.documentElement.dataset.e2eSubmitted) { return ""; }
	  const n = document.getElementById("ra-notice");
	  if (n && n.textContent.includes(`+jsString(msg)+`)) { return "ok"; }
	  const summary = document.querySelector(".nhsuk-error-summary");
	  if (summary) { return "error: " + summary.textContent.replace(/\s+/g, " ").trim(); }
	  return "";
	})()`)
}

// browserEnrol registers the tab's authenticator through an invite link and
// returns the success message.
func browserEnrol(t *testing.T, ctx context.Context, link string) string {
	t.Helper()
	run(t, ctx, "open the enrolment page", chromedp.Navigate(link))
	waitFor(t, ctx, "the enrolment page", `(() => {
	  const b = document.querySelector('#ceremony-start[data-ceremony="register"]');
	  return document.readyState === "complete" && b && !b.disabled ? "ok" : "";
	})()`)
	run(t, ctx, "press the register button", chromedp.Click(chromedp.ID("ceremony-start")))
	return waitFor(t, ctx, "registration to finish", `(() => {
	  const done = document.getElementById("ceremony-done");
	  if (done && !done.hidden) { return "ok: " + done.textContent.replace(/\s+/g, " ").trim(); }
	  const err = document.getElementById("ceremony-error");
	  if (err && !err.hidden) { return "error: " + err.textContent.replace(/\s+/g, " ").trim(); }
	  return "";
	})()`)
}

// browserLogin waits for the login page and presses the sign-in button.
func browserLogin(t *testing.T, ctx context.Context) {
	t.Helper()
	waitFor(t, ctx, "the login page", `(() => {
	  `+pageProblemJS+`
	  const b = document.querySelector('#ceremony-start[data-ceremony="login"]');
	  if (location.pathname === "/login" && document.readyState === "complete" && b && !b.disabled) { return "ok"; }
	  if (document.readyState !== "complete") { return ""; }
	  return pageProblem(["/login", "/ra/", "/oauth2/auth", "/oauth2/authorize"]);
	})()`)
	run(t, ctx, "press the sign-in button", chromedp.Click(chromedp.ID("ceremony-start")))
}

// replaceAuthenticator swaps the tab's virtual authenticator for a new,
// empty one, so the next sign-in has exactly one credential to offer.
func replaceAuthenticator(t *testing.T, ctx context.Context, old webauthn.AuthenticatorID) webauthn.AuthenticatorID {
	t.Helper()
	if _, err := chromedp.Call(ctx, webauthn.RemoveVirtualAuthenticator, webauthn.RemoveVirtualAuthenticatorParams{AuthenticatorID: old}); err != nil {
		t.Fatalf("WebAuthn.removeVirtualAuthenticator: %v", err)
	}
	return addVirtualAuthenticator(t, ctx)
}

// chromiumAttestationCert registers a throwaway credential with direct
// attestation on a blank localhost page and returns the leaf certificate
// (x5c[0]) of the packed attestation statement.
func chromiumAttestationCert(t *testing.T, ctx context.Context) *x509.Certificate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, `<!DOCTYPE html><title>attestation probe</title><main>probe</main>`)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	run(t, ctx, "open the probe page", chromedp.Navigate("http://localhost:"+port+"/"))
	raw := run(t, ctx, "register a probe credential", chromedp.Evaluate[string](`navigator.credentials.create({publicKey: {
	  rp: {id: "localhost", name: "attestation probe"},
	  user: {id: new Uint8Array(16), name: "probe", displayName: "probe"},
	  challenge: new Uint8Array(32),
	  pubKeyCredParams: [{type: "public-key", alg: -7}],
	  attestation: "direct",
	  authenticatorSelection: {residentKey: "discouraged", userVerification: "preferred"}
	}}).then(c => JSON.stringify(c.toJSON()))`, chromedp.EvalAwaitPromise))
	parsed, err := protocol.ParseCredentialCreationResponseBytes([]byte(raw))
	if err != nil {
		t.Fatalf("parse the probe registration: %v", err)
	}
	att := parsed.Response.AttestationObject
	x5c, _ := att.AttStatement["x5c"].([]any)
	if att.Format != "packed" || len(x5c) == 0 {
		t.Fatalf("probe attestation: format %q with %d certificates, want packed with x5c", att.Format, len(x5c))
	}
	der, _ := x5c[0].([]byte)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("probe attestation certificate: %v", err)
	}
	return cert
}

// chromiumTestAnchor returns a PEM trust anchor for the virtual
// authenticator's attestation key. Chromium issues a fresh self-signed
// leaf (CA:FALSE, validity ending at registration time plus some years)
// for every registration, so one extracted leaf cannot anchor the next.
// The anchor is a CA certificate with the leaf's subject and public key;
// Go trusts a root as given (its own signature, made here with a throwaway
// key, is never checked), and every later leaf verifies against its key.
// It is written to a temporary file named only in this test's config.
func chromiumTestAnchor(t *testing.T, leaf *x509.Certificate) []byte {
	t.Helper()
	throwaway, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), RawSubject: leaf.RawSubject,
		// A subject alternative name keeps Go from taking the anchor for
		// the leaf itself (same subject and key) while building the chain.
		DNSNames:  []string{"chromium-virtual-authenticator.test-only.invalid"},
		NotBefore: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	parent := &x509.Certificate{RawSubject: leaf.RawSubject}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, leaf.PublicKey, throwaway)
	if err != nil {
		t.Fatalf("make the test anchor: %v", err)
	}
	anchor, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(anchor)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("the probe attestation does not verify against the test anchor: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// assertNotTrustedByDefault checks that the Chromium test anchor is in no
// default or example configuration and in no certificate file of the
// repository: it is trusted only by tests that add it themselves.
func assertNotTrustedByDefault(t *testing.T, cert *x509.Certificate) {
	t.Helper()
	// The key, not one certificate, is what must not be trusted.
	spki := cert.RawSubjectPublicKeyInfo
	contains := func(raw []byte) bool {
		if bytes.Contains(raw, spki) || bytes.Contains(raw, []byte(base64.StdEncoding.EncodeToString(spki)[:48])) {
			return true
		}
		for rest := raw; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				return false
			}
			if c, err := x509.ParseCertificate(b.Bytes); err == nil && bytes.Equal(c.RawSubjectPublicKeyInfo, spki) {
				return true
			}
		}
	}
	anchorsTrust := func(what string, anchors []string, base string) {
		for _, a := range anchors {
			if !filepath.IsAbs(a) {
				a = filepath.Join(base, a)
			}
			raw, err := os.ReadFile(a)
			if err != nil {
				continue // a path for the operator's own files; not ours
			}
			if contains(raw) {
				t.Errorf("%s trusts the Chromium virtual authenticator certificate through %s", what, a)
			}
		}
	}
	if n := len(config.Defaults().WebAuthn.TrustAnchors); n != 0 {
		t.Errorf("config.Defaults() has %d trust anchors, want none", n)
	}
	root := filepath.Join("..", "..")
	examples, _ := filepath.Glob(filepath.Join(root, "deploy", "*.yaml"))
	if len(examples) == 0 {
		t.Fatal("no example configuration found in deploy/")
	}
	for _, ex := range examples {
		raw, err := os.ReadFile(ex)
		if err != nil {
			t.Fatal(err)
		}
		cfg := config.Defaults()
		if err := config.Parse(raw, &cfg); err != nil {
			t.Fatalf("%s: %v", ex, err)
		}
		anchorsTrust(ex, cfg.WebAuthn.TrustAnchors, filepath.Dir(ex))
	}
	// No certificate or config file in the repository carries it.
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" || d.Name() == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".pem", ".crt", ".cer", ".der", ".yaml", ".yml", ".json", ".env":
		default:
			return nil
		}
		if info, err := d.Info(); err != nil || info.Size() > 4<<20 {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err == nil && contains(raw) {
			t.Errorf("%s contains the Chromium virtual authenticator certificate", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
