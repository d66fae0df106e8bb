package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

// browserTimeout bounds the whole browser test: start, both ceremonies and
// every wait. The browser dies when it ends, so nothing can hang.
const browserTimeout = 90 * time.Second

// cspMarker prefixes the console error that the injected listener writes
// for each securitypolicyviolation event.
const cspMarker = "nhsid-e2e CSP violation:"

// syncMarker is logged last so that the console collector has seen every
// earlier message.
const syncMarker = "nhsid-e2e console sync"

// cspListener runs in every document before the page's own scripts (it is
// injected by DevTools, so the page's CSP does not block it) and turns each
// CSP violation into a console error the collector can see.
const cspListener = `document.addEventListener("securitypolicyviolation", function (e) {
  console.error("` + cspMarker + ` " + e.violatedDirective + " blocked " + (e.blockedURI || "(inline)") +
    " on " + e.documentURI + (e.sourceFile ? " at " + e.sourceFile + ":" + e.lineNumber : ""));
});`

// TestBrowser drives the real pages in headless Chromium with a virtual
// authenticator: enrol Dr Ada Demo through the seeded invite, then sign in to
// the /demo relying party through /oauth2/authorize and /login, and check the
// ID token claims and userinfo the demo page shows. It fails on any JS
// exception or CSP violation.
func TestBrowser(t *testing.T) {
	e := newEnv(t, "memory")
	if e.srv.Demo == nil || e.srv.Demo.InviteURL == "" || e.srv.Demo.PersonUID == "" {
		t.Fatalf("dev server seeded no demo data: %+v", e.srv.Demo)
	}
	demo := e.srv.Demo
	if !strings.HasPrefix(demo.InviteURL, e.issuer+"/enrol?") {
		t.Fatalf("invite URL %q is not %s/enrol?…", demo.InviteURL, e.issuer)
	}

	ctx := newChromium(t)
	console := collectConsole(t, ctx)
	authID := addVirtualAuthenticator(t, ctx)

	shots, err := os.MkdirTemp("", "nhsid-e2e-browser-")
	if err != nil {
		t.Fatal(err)
	}
	// The screenshots stay after the test, for humans to look at.
	t.Logf("screenshots in %s", shots)

	// 1. Enrol through the invite page.
	run(t, ctx, "open the enrolment page", chromedp.Navigate(demo.InviteURL))
	waitFor(t, ctx, "the enrolment page", `(() => {
	  const b = document.querySelector('#ceremony-start[data-ceremony="register"]');
	  return document.readyState === "complete" && b && !b.disabled ? "ok" : "";
	})()`)
	if body := text(t, ctx, "main"); !strings.Contains(body, "Ada") {
		t.Errorf("enrolment page does not greet Ada: %q", body)
	}
	run(t, ctx, "press the register button", chromedp.Click(chromedp.ID("ceremony-start")))
	enrolled := waitFor(t, ctx, "registration to finish", `(() => {
	  const done = document.getElementById("ceremony-done");
	  if (done && !done.hidden) {
	    return "ok: " + done.textContent.replace(/\s+/g, " ").trim();
	  }
	  const err = document.getElementById("ceremony-error");
	  if (err && !err.hidden) {
	    return "error: " + err.textContent.replace(/\s+/g, " ").trim();
	  }
	  return "";
	})()`)
	t.Logf("enrolment: %s", enrolled)
	if !strings.Contains(enrolled, "AAL") {
		t.Errorf("enrolment success message names no assurance level: %q", enrolled)
	}
	creds, err := chromedp.Call(ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: authID})
	if err != nil {
		t.Fatalf("WebAuthn.getCredentials: %v", err)
	}
	if len(creds.Credentials) != 1 || creds.Credentials[0].RpID != "localhost" {
		t.Fatalf("virtual authenticator holds %d credentials (want 1 for RP id localhost): %+v", len(creds.Credentials), creds.Credentials)
	}

	// 2. Sign in to the demo relying party.
	run(t, ctx, "open /demo", chromedp.Navigate(e.issuer+"/demo"))
	run(t, ctx, "click Sign in with nhsid", chromedp.Click(chromedp.ID("demo-sign-in")))
	waitFor(t, ctx, "the login page", `(() => {
	  const b = document.querySelector('#ceremony-start[data-ceremony="login"]');
	  if (location.pathname === "/login" && document.readyState === "complete" && b && !b.disabled) {
	    return "ok";
	  }
	  if (location.pathname !== "/login" && location.pathname !== "/demo" && document.readyState === "complete") {
	    return "error: stopped at " + location.pathname + ": " + document.title + ": " +
	      (document.querySelector("main") || document.body).textContent.replace(/\s+/g, " ").trim();
	  }
	  return "";
	})()`)
	if loc := location(t, ctx); !strings.HasPrefix(loc, e.issuer+"/login?flow=") {
		t.Fatalf("login page URL = %s, want %s/login?flow=…", loc, e.issuer)
	}
	screenshot(t, ctx, filepath.Join(shots, "login.png"))
	run(t, ctx, "press the sign-in button", chromedp.Click(chromedp.ID("ceremony-start")))
	waitFor(t, ctx, "the demo page with the ID token", `(() => {
	  if (document.readyState !== "complete") { return ""; }
	  if (location.pathname === "/demo" && document.getElementById("id-token-claims")) { return "ok"; }
	  const err = document.getElementById("ceremony-error");
	  if (err && !err.hidden) { return "error: " + err.textContent.replace(/\s+/g, " ").trim(); }
	  const summary = document.querySelector(".nhsuk-error-summary:not([hidden])");
	  if (summary) { return "error at " + location.pathname + ": " + summary.textContent.replace(/\s+/g, " ").trim(); }
	  if (location.pathname !== "/login" && location.pathname !== "/demo" && !location.pathname.startsWith("/oauth2/")) {
	    return "error: stopped at " + location.pathname + ": " + document.title + ": " +
	      (document.querySelector("main") || document.body).textContent.replace(/\s+/g, " ").trim();
	  }
	  return "";
	})()`)
	screenshot(t, ctx, filepath.Join(shots, "demo.png"))

	claims := text(t, ctx, "#id-token-claims")
	userinfo := text(t, ctx, "#userinfo")
	t.Logf("ID token claims:\n%s", claims)
	t.Logf("userinfo:\n%s", userinfo)
	for _, want := range []string{demo.PersonUID, `"nhsid_useruid"`, `"authentication_assurance_level"`, `"acr"`} {
		if !strings.Contains(claims, want) {
			t.Errorf("ID token claims lack %s", want)
		}
	}
	if !strings.Contains(userinfo, "Demo") {
		t.Errorf("userinfo lacks the family name Demo")
	}

	// 3. No JS exception and no CSP violation on any page.
	bad, other := consoleProblems(console.drain(t, ctx))
	for _, m := range other {
		t.Logf("browser console (not fatal): %s (%s)", m, m.URL)
	}
	for _, m := range bad {
		t.Errorf("browser console: %s (%s:%d)", m, m.URL, m.Line)
	}
}

// consoleProblems splits the messages into the fatal ones (JS exceptions and
// CSP violations) and the other errors and warnings.
func consoleProblems(msgs []chromedp.ConsoleMessage) (bad, other []chromedp.ConsoleMessage) {
	for _, m := range msgs {
		switch {
		case m.IsException() || strings.Contains(m.Text, cspMarker) ||
			strings.Contains(m.Text, "Content Security Policy") || strings.Contains(m.Text, "Content-Security-Policy"):
			bad = append(bad, m)
		case m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning:
			other = append(other, m)
		}
	}
	return bad, other
}

// TestBrowserConsoleGuard shows that the console check of TestBrowser
// catches what it must: a page with an inline script and a blocked image
// under a strict CSP, and a script that throws.
func TestBrowserConsoleGuard(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self'")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		switch r.URL.Path {
		case "/throw.js":
			w.Header().Set("Content-Type", "text/javascript")
			_, _ = io.WriteString(w, `throw new Error("guard test exception");`)
		default:
			_, _ = io.WriteString(w, `<!DOCTYPE html><title>guard</title><main>guard</main>`+
				`<script>window.inline = 1;</script><img src="https://example.invalid/x.png" alt="">`+
				`<script src="/throw.js"></script>`)
		}
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)

	ctx := newChromium(t)
	console := collectConsole(t, ctx)
	run(t, ctx, "open the guard page", chromedp.Navigate("http://localhost:"+port+"/"))
	waitFor(t, ctx, "the guard page", `document.readyState === "complete" ? "ok" : ""`)
	bad, _ := consoleProblems(console.drain(t, ctx))
	var csp, exc int
	for _, m := range bad {
		switch {
		case m.IsException() && strings.Contains(m.Text, "guard test exception"):
			exc++
		case strings.Contains(m.Text, cspMarker):
			csp++
		}
	}
	// Two violations (inline script, image) seen by the injected listener,
	// and the exception.
	if csp < 2 || exc != 1 {
		t.Errorf("guard caught %d CSP violations (want ≥2) and %d exceptions (want 1): %v", csp, exc, bad)
	}
}

// newChromium starts headless Chromium for t and returns a context for one
// tab. The browser stops when t ends or after browserTimeout.
func newChromium(t *testing.T) context.Context {
	t.Helper()
	bin := chromiumPath(t)
	profile := t.TempDir()
	var out lockedBuffer
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.CombinedOutput(&out),
	)
	timeoutCtx, cancelTimeout := context.WithTimeout(context.Background(), browserTimeout)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(timeoutCtx, opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		cancelTimeout()
		// A child process can write into the profile for a moment after the
		// browser exits; empty it so t.TempDir's own removal succeeds.
		for range 50 {
			if err := os.RemoveAll(profile); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		_ = os.MkdirAll(profile, 0o700)
	})
	// Start the browser and open the tab now, so a failure to start is
	// reported as such.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("cannot start Chromium %s: %v\nbrowser output:\n%s", bin, err, tail(out.String(), 4000))
	}
	return ctx
}

// chromiumPath is $NHSID_CHROMIUM, or the first Chromium on $PATH.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("NHSID_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("NHSID_CHROMIUM=%s: %v", p, err)
		}
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chromium-headless-shell", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found: install Debian's chromium package or set NHSID_CHROMIUM to the browser binary")
	return ""
}

// addVirtualAuthenticator gives the tab a CTAP2 USB security key with a PIN
// (user verification) that confirms presence by itself.
func addVirtualAuthenticator(t *testing.T, ctx context.Context) webauthn.AuthenticatorID {
	t.Helper()
	if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{EnableUI: boolPtr(false)}); err != nil {
		t.Fatalf("WebAuthn.enable: %v", err)
	}
	res, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
		Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol:                    webauthn.AuthenticatorProtocolCtap2,
			Transport:                   webauthn.AuthenticatorTransportUsb,
			HasResidentKey:              true,
			HasUserVerification:         true,
			IsUserVerified:              true,
			AutomaticPresenceSimulation: true,
		},
	})
	if err != nil {
		t.Fatalf("WebAuthn.addVirtualAuthenticator: %v", err)
	}
	return res.AuthenticatorID
}

func boolPtr(b bool) *bool { return &b }

// consoleLog collects the tab's console messages, exceptions and browser log
// entries.
type consoleLog struct {
	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
	seen chan struct{} // closed when syncMarker arrives
	once sync.Once
}

func collectConsole(t *testing.T, ctx context.Context) *consoleLog {
	t.Helper()
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: cspListener}); err != nil {
		t.Fatalf("inject the CSP listener: %v", err)
	}
	c := &consoleLog{seen: make(chan struct{})}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleLog && m.Text == syncMarker {
				c.once.Do(func() { close(c.seen) })
				continue
			}
			c.mu.Lock()
			c.msgs = append(c.msgs, m)
			c.mu.Unlock()
		}
	}()
	return c
}

// drain logs syncMarker in the page, waits until the collector has seen it,
// and returns every message before it.
func (c *consoleLog) drain(t *testing.T, ctx context.Context) []chromedp.ConsoleMessage {
	t.Helper()
	run(t, ctx, "log the console sync marker", chromedp.Evaluate[chromedp.Void](`console.log("`+syncMarker+`")`))
	select {
	case <-c.seen:
	case <-time.After(10 * time.Second):
		t.Error("the console collector did not see the sync marker; the console check is incomplete")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]chromedp.ConsoleMessage(nil), c.msgs...)
}

// run runs one action with a bound, failing t with what on error.
func run[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(actx, a)
	if err != nil {
		t.Fatalf("%s: %v (page %s)", what, err, location(t, ctx))
	}
	return v
}

// waitFor evaluates js in the page every 100 ms until it returns a
// non-empty string, across navigations. "ok…" is success; anything else
// fails t. It gives up after 30 s.
func waitFor(t *testing.T, ctx context.Context, what, js string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			break
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := chromedp.Run(actx, chromedp.Evaluate[string](js))
		cancel()
		switch {
		case err != nil:
			// The document is changing under a navigation; try again.
			last = err
		case strings.HasPrefix(s, "ok"):
			return s
		case s != "":
			t.Fatalf("waiting for %s: %s (page %s)", what, s, location(t, ctx))
		}
		time.Sleep(100 * time.Millisecond)
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, _ := chromedp.Run(actx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	t.Fatalf("timed out waiting for %s (last error %v) at %s; page text:\n%s", what, last, location(t, ctx), tail(body, 2000))
	return ""
}

// location is the tab's URL, or a note why it is unknown.
func location(t *testing.T, ctx context.Context) string {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	loc, err := chromedp.Run(actx, chromedp.Location())
	if err != nil {
		return fmt.Sprintf("(unknown: %v)", err)
	}
	return loc
}

// text is the text content of the first element that matches sel.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return run(t, ctx, "read "+sel, chromedp.TextContent(chromedp.CSS(sel), chromedp.NodeReady))
}

// screenshot saves a PNG of the whole page at path.
func screenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	png := run(t, ctx, "screenshot", chromedp.FullScreenshot(100))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// lockedBuffer is a strings.Builder safe for the browser's output copier.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
