// Package onboarding runs relying-party onboarding (issue 10): integrators
// (not NHS staff) sign up by email verification and a passkey, apply for a
// client, test against a sandbox client at once, answer reviewers'
// questions, and go live when a reviewer approves. Change requests to a live
// client go through the same review; the live client keeps its settings
// until one is approved.
//
//	sign-up ──mail link──▶ verify ──invite──▶ /enrol (passkey, AAL2+)
//	apply ──▶ application (submitted) + sandbox client (nhsid_environment sandbox)
//	reviewer: ask ◀──▶ integrator: answer; sign-offs (sensitive scopes, AAL<3, failed checks)
//	decide: approved ──▶ production client | rejected ──▶ sandbox disabled | deferred ──▶ sandbox only
//
// Who may sign in where is policy.CheckEnvironment, enforced by idp.
// Reviewers are the operator (admin API bearer token) or, on the web
// console at /onboarding/review, a signed-in person flagged Reviewer at
// AAL2 or above. Every step is audited (audit.AdminChange events with
// object "onboarding_application") and kept in the application's history.
//
// Only internal/server and tests import this package.
package onboarding
