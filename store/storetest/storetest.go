// Package storetest is the conformance suite every store adapter must pass:
// RunTests exercises each method of policy.Store, authn.Store,
// idp.ClientStore and idp.KeyStore (round trips, not found, uniqueness,
// expiry, atomic consumption, concurrent updates, pagination and zero
// times). store/memory and store/postgres run it from their own tests;
// fosite token storage has its own suite (RunOAuthTests). Only tests import
// this package.
package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/policy"
)

// Store is what RunTests checks.
type Store interface {
	policy.Store
	policy.RBACStore
	authn.Store
	idp.ClientStore
	idp.KeyStore
}

// t0 is the suite's "now": microsecond precision, UTC, as PostgreSQL keeps it.
var t0 = time.Date(2026, 3, 2, 9, 30, 15, 123456000, time.UTC)

type suiteTest struct {
	name string
	run  func(t *testing.T, s Store)
}

// RunTests runs the whole suite; newStore must return an empty store, and
// is called once per subtest (which run in parallel).
func RunTests(t *testing.T, newStore func(t *testing.T) Store) {
	var tests []suiteTest
	tests = append(tests, policyTests()...)
	tests = append(tests, authnTests()...)
	tests = append(tests, idpTests()...)
	tests = append(tests, rbacTests()...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newStore(t))
		})
	}
}

// equal fails the test unless got and want are deeply equal.
func equal(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

// noErr fails the test on err.
func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// isErr fails the test unless errors.Is(err, target).
func isErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

// seq returns "prefix-00".."prefix-(n-1)".
func seq(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%02d", prefix, i)
	}
	return out
}

// errAbort is returned by updater closures to check it is passed through.
var errAbort = errors.New("storetest: abort")
