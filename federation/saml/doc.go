// Package saml is nhsid's SAML 2.0 identity provider: the registry of
// service providers (SPs) registered from their metadata XML, the IdP
// metadata at /saml/metadata, SP-initiated single sign-on over the
// HTTP-Redirect and HTTP-POST bindings, IdP-initiated sign-on, the signed
// assertion (persistent NameID = the person's uid, AuthnContextClassRef
// from the session's AAL, attributes named per SP) and single logout for
// LogoutRequests sent by SPs.
//
// It uses github.com/crewjam/saml for the protocol types and to make the
// assertion (DefaultAssertionMaker, wrapped), and does itself what that
// library does not: verifying signed AuthnRequests and LogoutRequests
// (Redirect: SigAlg and Signature over the query string; POST: an enveloped
// signature checked with goxmldsig against the SP's certificates),
// refusing replayed request IDs, bounding IssueInstant, size-limiting and
// refusing DTDs before any XML is parsed, and checking ACS URLs against the
// SP's metadata (http and https only).
//
// Sign-in reuses authn's browser-bound flows and SSO session, so one
// sign-in serves OIDC and SAML apps alike:
//
//	SP ──AuthnRequest──▶ GET  /saml/sso ─┐ (validated once, on arrival)
//	SP ──AuthnRequest──▶ POST /saml/sso ─┴▶ 303 /saml/sso/continue?req=ID
//	                                   │   (same-site GET: sees the SameSite=Lax session)
//	     usable session at the AAL? ───┤ yes ─▶ signed Response ─▶ POST form to the ACS
//	                                   └ no ─▶ authn.StartFlow ─▶ /login?flow=ID
//	                                           ─▶ /saml/resume?flow=ID ─▶ signed Response
//
// It declares the Store it needs; store/memory and store/postgres implement
// it. internal/server mounts Handler; admin registers SPs through Registry.
//
// Global logout (slo_backchannel.go, logoutqueue.go): Handler.BackchannelLogout
// returns an authn.SessionEndListener that internal/server registers. When
// any nhsid session ends, it writes a row to the store's durable queue
// (LogoutQueue) for every participant SP whose metadata has a
// SingleLogoutService on the SOAP binding; it never blocks the logout.
// Handler.RunLogoutDelivery, on every replica, claims due rows (leased,
// so replicas never send the same one at once), signs a fresh
// LogoutRequest for each (persistent NameID = uid, the SessionIndex that
// was asserted, NotOnOrAfter) and POSTs it in a SOAP 1.1 envelope through
// the guarded outbound client, retrying with exponential backoff up to
// SLOConfig.MaxAttempts. SPs with only HTTP-Redirect or HTTP-POST
// SingleLogoutService cannot be reached from the back end and are skipped
// (logged): after a user-initiated logout they keep their own session
// until it expires. Handler.DeliverLogouts delivers what is due now
// (tests).
//
// AuthnContextClassRef values: AAL3 sessions are asserted as
// urn:nhsid:aal3 (ClassAAL3), AAL2 sessions as urn:nhsid:aal2 (ClassAAL2).
// An SP may ask for either in RequestedAuthnContext; urn:nhsid:aal3 makes
// the user step up.
package saml
