// Package idp is nhsid's OpenID Connect provider, built on ory/fosite:
// discovery, JWKS and signing-key rotation, authorize (with the sign-in
// hand-off to authn), token, userinfo, introspection, revocation and PAR,
// and the CIS2-compatible claims. fosite owns protocol logic and OAuth error
// responses; idp owns what fosite leaves to its caller (prompt, max_age,
// acr/amr, per-client rules, refresh grace, keys).
//
// It declares the Store it needs (clients, keys and fosite's token storage);
// store/memory and store/postgres implement it.
package idp
