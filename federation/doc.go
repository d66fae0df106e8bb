// Package federation is home to nhsid's federation protocols beyond its own
// OpenID Connect provider: the SAML 2.0 identity provider will live in
// federation/saml, and upstream identity brokering beside it. Each protocol
// reuses authn's sign-in flows and sessions and policy's claims, so one
// sign-in serves OIDC and SAML apps alike.
package federation
