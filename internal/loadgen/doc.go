// Package loadgen drives a running nhsid over HTTP the way real clients do,
// for the load generator (cmd/nhsid-load) and its tests: Setup enrols many
// people with software authenticators and registers the clients the
// scenarios need; Run executes one scenario (login, client_credentials,
// refresh, introspect, userinfo, saml-sso, mixed) closed-loop or open-loop and
// summarises throughput, latency percentiles and errors by kind; Limit runs
// the unavoidable work of each operation (the cryptography and the minimal
// database round trips) without HTTP or framework, so that a scenario's
// throughput can be read as a ratio of its limit from the same run.
//
// Load only ever goes to loopback addresses and every run is bounded in
// time and concurrency.
package loadgen
