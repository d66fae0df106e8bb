// Package authn authenticates people: WebAuthn enrolment through an RA's
// invite, discoverable passkey sign-in with user verification, the
// authenticator assurance level (AAL) of each credential, SSO sessions with
// idle and absolute lifetimes per AAL, sign-in flows bound to the browser, and
// the JSON ceremony API and pages that drive them. It declares the Store it
// needs; store/memory and store/postgres implement it.
//
//	idp /oauth2/authorize ──StartFlow──▶ /login?flow=ID ──▶ /webauthn/login/begin
//	      ▲                                                  /webauthn/login/finish
//	      └──────────── Flow.ResumeURL ◀── session cookie set ──┘
package authn
