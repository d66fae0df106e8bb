package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestOnboardingBrowser walks relying-party onboarding through the real
// pages in headless Chromium with virtual authenticators. An integrator
// signs up on /onboarding (email, then the verification link from the
// server log, then a passkey), signs in, submits the application form and
// sees its status and sandbox client. A reviewer, created and flagged by
// the operator and enrolled through an invite in a separate browser
// context (own cookies, own authenticator), asks a question on
// /onboarding/review; the integrator answers it on /onboarding; the
// reviewer signs off the required items and approves; the integrator's
// status page then shows the approval and the production client. It fails
// on any JS exception or CSP violation in either context.
func TestOnboardingBrowser(t *testing.T) {
	e := newEnv(t, "memory")
	shots, err := os.MkdirTemp("", "nhsid-e2e-onboarding-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", shots)

	ictx := newChromium(t)
	iconsole := collectConsole(t, ictx)
	addVirtualAuthenticator(t, ictx)

	// 1. Sign up: the confirmation link arrives by (logged) email.
	run(t, ictx, "open /onboarding", chromedp.Navigate(e.issuer+"/onboarding"))
	onbWait(t, ictx, "the sign-up form", `document.getElementById("signup-form")`, "/onboarding")
	for _, f := range []struct{ id, v string }{{"given_name", "Ivy"}, {"family_name", "Integrator"},
		{"email", "ivy.browser@acme.example"}, {"org", "Acme Health Ltd"}} {
		run(t, ictx, "type "+f.id, chromedp.SendKeys(chromedp.ID(f.id), f.v))
	}
	before := len(verifyLink.FindAllString(e.logs.String(), -1))
	onbSubmit(t, ictx, "send the sign-up form", `#signup-form button[type="submit"]`)
	onbWaitNotice(t, ictx, "/onboarding", "Check your email")
	links := verifyLink.FindAllString(e.logs.String(), -1)
	if len(links) != before+1 {
		t.Fatalf("sign-up logged %d verification links, want 1", len(links)-before)
	}

	// 2. The link leads to the enrolment page: register a passkey.
	if got := browserEnrol(t, ictx, e.issuer+links[len(links)-1]); !strings.Contains(got, "AAL") {
		t.Fatalf("integrator enrolment: %q", got)
	}

	// 3. Sign in to /onboarding and submit the application form.
	run(t, ictx, "open /onboarding", chromedp.Navigate(e.issuer+"/onboarding"))
	onbWait(t, ictx, "the sign-in button", `document.getElementById("signin")`, "/onboarding")
	run(t, ictx, "click Sign in", chromedp.Click(chromedp.ID("signin")))
	onbLogin(t, ictx)
	onbWait(t, ictx, "the application form", `document.getElementById("apply-form")`, "/onboarding", "/login")
	for _, f := range []struct{ id, v string }{
		{"organisation", "Acme Health Ltd"}, {"product", "Ward Rounds Browser"},
		{"commissioner", "NHS Example ICB"}, {"commissioning_evidence", "Contract signed 2026-01-10"},
		{"commissioning_reference", "ICB-2026-042"}, {"hosting_location", "UK"},
		{"user_groups", "nurses, doctors"}, {"redirect_uris", "https://wardrounds.example/callback"},
		{"contact_name", "Ivy Integrator"}, {"contact_email", "ivy.browser@acme.example"},
	} {
		run(t, ictx, "type "+f.id, chromedp.SendKeys(chromedp.ID(f.id), f.v))
	}
	run(t, ictx, "choose serves England", chromedp.SetValue(chromedp.ID("serves_england"), "yes"))
	run(t, ictx, "choose AAL2", chromedp.SetValue(chromedp.ID("required_aal"), "2"))
	for _, sc := range []string{"openid", "profile", "nationalrbacaccess"} {
		run(t, ictx, "tick scope "+sc, chromedp.Click(chromedp.ID("scope-"+sc)))
	}
	onbSubmit(t, ictx, "submit the application", "#apply-submit")
	onbWaitNotice(t, ictx, "/onboarding/apply", "Application submitted")
	appID := run(t, ictx, "read the application id", chromedp.Evaluate[string](`document.querySelector(".application").dataset.id`))
	if appID == "" {
		t.Fatal("no application card after submitting")
	}
	card := `.application[data-id="` + appID + `"]`
	mustEqual(t, "status after submitting", strings.TrimSpace(text(t, ictx, card+" .app-status")), "submitted")
	if sb := strings.TrimSpace(text(t, ictx, card+" .sandbox-client")); sb == "" {
		t.Error("no sandbox client shown")
	}
	if secret := strings.TrimSpace(text(t, ictx, "#sandbox-secret")); len(secret) < 16 {
		t.Errorf("sandbox secret %q", secret)
	}
	screenshot(t, ictx, filepath.Join(shots, "integrator-submitted.png"))

	// 4. The operator makes a reviewer, who enrols in a separate browser
	// context (no cookies of the integrator, its own authenticator).
	revUID := e.newPerson("Rhea", "Reviewer")
	e.admin("PUT", "/admin/v1/onboarding/reviewers/"+revUID, map[string]bool{"reviewer": true}, 200, nil)
	var inv struct{ URL string }
	e.admin("POST", "/admin/v1/people/"+revUID+"/invites", nil, 201, &inv)
	rctx, cancel := chromedp.NewContext(ictx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	rconsole := collectConsole(t, rctx)
	addVirtualAuthenticator(t, rctx)
	if got := browserEnrol(t, rctx, inv.URL); !strings.Contains(got, "AAL") {
		t.Fatalf("reviewer enrolment: %q", got)
	}

	// 5. The reviewer signs in to the queue and asks a question.
	run(t, rctx, "open the review queue", chromedp.Navigate(e.issuer+"/onboarding/review"))
	onbLogin(t, rctx)
	onbWait(t, rctx, "the application in the queue", `document.querySelector(`+jsString(card)+`)`, "/onboarding/review", "/login")
	queue := text(t, rctx, card)
	for _, want := range []string{"Acme Health Ltd", "Ward Rounds Browser", "nationalrbacaccess", "Passed"} {
		if !strings.Contains(queue, want) {
			t.Errorf("queue card lacks %q: %s", want, queue)
		}
	}
	screenshot(t, rctx, filepath.Join(shots, "review-queue.png"))
	const question = "Which ICB signed the contract?"
	run(t, rctx, "type the question", chromedp.SendKeys(chromedp.ID("q-"+appID), question))
	onbSubmit(t, rctx, "ask", card+` form.ask button[type="submit"]`)
	onbWaitNotice(t, rctx, "/onboarding/review", "Question sent")
	mustEqual(t, "status after the question", strings.TrimSpace(text(t, rctx, card+" .app-status")), "questions")

	// 6. The integrator sees the question and answers it.
	run(t, ictx, "reload /onboarding", chromedp.Navigate(e.issuer+"/onboarding"))
	onbWait(t, ictx, "the question", `document.querySelector(`+jsString(card+" .question textarea")+`)`, "/onboarding")
	if q := text(t, ictx, card+" .question"); !strings.Contains(q, question) {
		t.Fatalf("integrator does not see the question: %s", q)
	}
	mustEqual(t, "integrator status with a question", strings.TrimSpace(text(t, ictx, card+" .app-status")), "questions")
	const answer = "NHS Example ICB, reference ICB-2026-042."
	run(t, ictx, "type the answer", chromedp.SendKeys(chromedp.CSS(card+" .question textarea"), answer))
	onbSubmit(t, ictx, "send the answer", card+` .question button[type="submit"]`)
	onbWaitNotice(t, ictx, "/onboarding", "Answer sent")
	mustEqual(t, "status after the answer", strings.TrimSpace(text(t, ictx, card+" .app-status")), "submitted")

	// 7. The reviewer sees the answer, signs off every required item and
	// approves.
	run(t, rctx, "reload the review queue", chromedp.Navigate(e.issuer+"/onboarding/review"))
	onbWait(t, rctx, "the answered question", `document.querySelector(`+jsString(card+" .question")+`)`, "/onboarding/review")
	if q := text(t, rctx, card+" .question"); !strings.Contains(q, answer) {
		t.Fatalf("reviewer does not see the answer: %s", q)
	}
	var signedOff []string
	for range 5 {
		item := run(t, rctx, "find a sign-off form", chromedp.Evaluate[string](`(() => {
		  const i = document.querySelector(`+jsString(card+` form.sign-off input[name="item"]`)+`);
		  return i ? i.value : "";
		})()`))
		if item == "" {
			break
		}
		onbSubmit(t, rctx, "sign off "+item, card+` form.sign-off button[type="submit"]`)
		onbWaitNotice(t, rctx, "/onboarding/review", "Signed off")
		signedOff = append(signedOff, item)
	}
	mustEqual(t, "items signed off", signedOff, []string{"scope:nationalrbacaccess", "aal"})
	const reasons = "Meets the criteria; board minute 12."
	run(t, rctx, "choose Approve", chromedp.SetValue(chromedp.ID("o-"+appID), "approved"))
	run(t, rctx, "type the reasons", chromedp.SendKeys(chromedp.ID("r-"+appID), reasons))
	onbSubmit(t, rctx, "record the decision", card+` form.decide button[type="submit"]`)
	onbWaitNotice(t, rctx, "/onboarding/review", "Decision recorded")
	if still := run(t, rctx, "look for the card", chromedp.Evaluate[bool](`!!document.querySelector(`+jsString(card)+`)`)); still {
		t.Error("the approved application is still in the queue")
	}
	screenshot(t, rctx, filepath.Join(shots, "review-decided.png"))

	// 8. The integrator's status page shows the approval.
	run(t, ictx, "reload /onboarding", chromedp.Navigate(e.issuer+"/onboarding"))
	onbWait(t, ictx, "the approved application", `document.querySelector(`+jsString(card+" .production-client")+`)`, "/onboarding")
	mustEqual(t, "status after approval", strings.TrimSpace(text(t, ictx, card+" .app-status")), "approved")
	status := text(t, ictx, card)
	for _, want := range []string{"Decision: approved", reasons, question, answer} {
		if !strings.Contains(status, want) {
			t.Errorf("integrator's status lacks %q: %s", want, status)
		}
	}
	if prod := strings.TrimSpace(text(t, ictx, card+" .production-client")); prod == "" {
		t.Error("no production client shown")
	}
	screenshot(t, ictx, filepath.Join(shots, "integrator-approved.png"))

	// 9. An integrator is no reviewer.
	run(t, ictx, "open the review queue as the integrator", chromedp.Navigate(e.issuer+"/onboarding/review"))
	waitFor(t, ictx, "the refusal", `document.readyState === "complete" && document.body.textContent.includes("Only onboarding reviewers") ? "ok" : ""`)

	// 10. No JS exception and no CSP violation in either context.
	for who, c := range map[string]struct {
		ctx context.Context
		log *consoleLog
	}{"integrator": {ictx, iconsole}, "reviewer": {rctx, rconsole}} {
		bad, other := consoleProblems(c.log.drain(t, c.ctx))
		for _, m := range other {
			t.Logf("%s console (not fatal): %s (%s)", who, m, m.URL)
		}
		for _, m := range bad {
			t.Errorf("%s console: %s (%s:%d)", who, m, m.URL, m.Line)
		}
	}
}

// onbSubmit marks the current document, then clicks the button matching
// sel, so that the waits after it see only the page the form leads to.
func onbSubmit(t *testing.T, ctx context.Context, what, sel string) {
	t.Helper()
	run(t, ctx, "mark the page before "+what, chromedp.Evaluate[chromedp.Void](`document.documentElement.dataset.e2eSubmitted = "1"`))
	run(t, ctx, what, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// onbWait waits for a fresh, fully loaded page at one of paths on which
// the JS expression cond is truthy; an error summary, an error page or
// another path fails t.
func onbWait(t *testing.T, ctx context.Context, what, cond string, paths ...string) {
	t.Helper()
	quoted := make([]string, len(paths))
	for i, p := range paths {
		quoted[i] = jsString(p)
	}
	waitFor(t, ctx, what, `(() => {
	  `+pageProblemJS+`
	  if (document.readyState !== "complete" || document.documentElement.dataset.e2eSubmitted) { return ""; }
	  if (`+cond+`) { return "ok"; }
	  return pageProblem([`+strings.Join(quoted, ",")+`]) || (location.pathname === "/login" ? "" : "error: no " + `+jsString(what)+` + " on " + location.pathname + ": " + document.querySelector("main").textContent.replace(/\s+/g, " ").trim().slice(0, 500));
	})()`)
}

// onbWaitNotice waits for the page after a form, at path, with a notice
// containing msg.
func onbWaitNotice(t *testing.T, ctx context.Context, path, msg string) {
	t.Helper()
	onbWait(t, ctx, "the message "+msg, `(document.getElementById("notice") || {textContent: ""}).textContent.includes(`+jsString(msg)+`)`, path)
}

// onbLogin waits for the login page that /onboarding's sign-in leads to
// and presses the sign-in button.
func onbLogin(t *testing.T, ctx context.Context) {
	t.Helper()
	waitFor(t, ctx, "the login page", `(() => {
	  `+pageProblemJS+`
	  const b = document.querySelector('#ceremony-start[data-ceremony="login"]');
	  if (location.pathname === "/login" && document.readyState === "complete" && b && !b.disabled) { return "ok"; }
	  if (document.readyState !== "complete") { return ""; }
	  return pageProblem(["/login", "/onboarding", "/onboarding/signin", "/onboarding/review"]);
	})()`)
	run(t, ctx, "press the sign-in button", chromedp.Click(chromedp.ID("ceremony-start")))
}
