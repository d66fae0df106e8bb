// Package idp is nhsid's OpenID Connect provider, built on ory/fosite:
// discovery, JWKS and signing-key rotation, authorize (with the sign-in
// hand-off to authn), token, userinfo, introspection, revocation and PAR,
// and the CIS2-compatible claims. fosite owns protocol logic and OAuth error
// responses; idp owns what fosite leaves to its caller (prompt, max_age,
// acr/amr, per-client rules, refresh grace, keys).
//
// It declares the Store it needs (clients, keys and fosite's token storage);
// store/memory and store/postgres implement it. It declares Authenticator,
// which authn.Service implements; cmd/nhsid wires them together.
//
//	GET /oauth2/authorize ── usable SSO session? ──yes──▶ issue ──▶ 302 redirect_uri?code&state&iss
//	        │ no (or prompt=login, max_age, step-up)            ▲
//	        ▼                                                    │
//	Authn.StartFlow ──▶ /login?flow=ID ──(authn: WebAuthn)──▶ /oauth2/authorize/resume?flow=ID
//	                                                            (same session SID, stored form
//	                                                             re-parsed, original RequestedAt)
//
// Files: provider.go (New, Mount, token/introspect/revoke/PAR), authorize.go
// (authorize, resume, acr), session.go (fosite session), keys.go (keys,
// rotation, JWKS, signer), claims.go (scope claims), userinfo.go,
// register.go (client registration, secret hasher), discovery.go,
// logout.go (end_session_endpoint: RP-initiated logout with id_token_hint,
// confirmation page, post_logout_redirect_uri), backchannel.go (the
// authn.SessionEndListener that revokes a session's tokens and queues
// logout_tokens; the durable delivery worker with backoff), logoutstore.go.
package idp
