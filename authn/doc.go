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
//
// Ending sessions (endsession.go). Every way a session ends — POST /logout,
// RP-initiated logout (idp), the account page, an RA or leaver
// (EndPersonSessions), a browser taken over by another person, and absolute
// expiry (RunSessionSweeper) — goes through EndSession, which marks the
// session ended once and then calls every registered SessionEndListener
// with the ended Session and the reason (End* constants). An idle timeout
// ends nothing: it only stops SSO reuse, and RPs are not told.
//
//	EndSession(sid, reason) ──▶ session.EndedAt set (once) ──▶ audit "logout"
//	        └──▶ for each OnSessionEnd listener: SessionEnded(ctx, session, reason)
//	               idp:             revoke the session's tokens, queue back-channel logout
//	               federation/saml: send SAML LogoutRequests to the session's SPs
//
// A listener joins by implementing SessionEndListener (or SessionEndFunc)
// and being registered in internal/server with Service.OnSessionEnd. It runs
// synchronously inside the logout, so it must only queue work (never call
// an RP inline), and it logs its own errors. Parties that took part in a
// session are recorded as SessionParticipant rows (Kind "oidc" or "saml")
// through ParticipantStore; the account page lists them as the apps used.
package authn
