// Package e2e holds nhsid's end-to-end tests: the whole server from
// internal/server behind real HTTP listeners, driven by an independent RP
// library (coreos/go-oidc with x/oauth2), a software WebAuthn authenticator,
// and a real headless Chromium, on the memory store and on PostgreSQL. It has
// no non-test code.
package e2e
