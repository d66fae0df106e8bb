// Package policy owns who people are and what they may do: organisations (by
// ODS code), people and their identity assurance, the national RBAC role
// catalogue, positions, the Registration Authority rules and per-client access
// rules. It declares the Store it needs; store/memory and store/postgres
// implement it. It imports no HTTP or protocol package: idp, authn, admin and
// federation call into it.
package policy
