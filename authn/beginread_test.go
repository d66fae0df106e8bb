package authn_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"

	"github.com/nhsid/nhsid/authn"
)

// TestLoginChallengeMadeWithFlow: a flow is created with its login
// challenge, and the login begin hands that challenge out without writing
// while it is young, unused and asked for by the flow's own browser; any
// other begin makes a new one, as before.
func TestLoginChallengeMadeWithFlow(t *testing.T) {
	h, b, k := enrolled(t, virtualwebauthn.AuthenticatorOptions{})
	ctx := context.Background()
	stored := func(flow string) authn.Flow {
		t.Helper()
		f, err := h.store.GetFlow(ctx, flow, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	madeChallenge := func(flow string) []byte {
		t.Helper()
		f := stored(flow)
		if len(f.LoginChallenge) == 0 || len(f.LoginOptions) == 0 {
			return nil
		}
		opts, err := virtualwebauthn.ParseAssertionOptions(string(f.LoginOptions))
		if err != nil {
			t.Fatalf("stored options: %v: %s", err, f.LoginOptions)
		}
		return opts.Challenge
	}
	begin := func(b *browser, flow string) *virtualwebauthn.AssertionOptions {
		t.Helper()
		r, opts := b.loginBegin(t, flow)
		if opts == nil {
			t.Fatalf("begin: %d %s", r.status, r.body)
		}
		if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("begin headers: %v", r.header)
		}
		return opts
	}

	flow := b.startFlow(t, 2)
	made := madeChallenge(flow)
	if len(made) < 32 {
		t.Fatalf("flow created without its login challenge: %v", made)
	}
	first := begin(b, flow)
	if !bytes.Equal(first.Challenge, made) {
		t.Fatal("begin did not hand out the challenge made with the flow")
	}
	if second := begin(b, flow); !bytes.Equal(second.Challenge, made) {
		t.Fatal("a second begin changed the challenge")
	}
	// Another browser gets nothing of it.
	if r, _ := h.browser().loginBegin(t, flow); r.status != 400 || r.errorCode(t) != "invalid_flow" {
		t.Fatalf("begin from another browser: %d %s", r.status, r.body)
	}
	if r := b.postJSON(t, "/webauthn/login/finish?flow="+flow, b.assertion(k, first)); r.status != 200 {
		t.Fatalf("finish: %d %s", r.status, r.body)
	}
	// Spent: a begin on the same flow makes a new challenge.
	if again := begin(b, flow); bytes.Equal(again.Challenge, made) {
		t.Fatal("begin after the sign-in handed out the spent challenge")
	}

	// Old: past the first fifth of its life, the begin makes a new one,
	// and the sign-in works with it.
	flow = b.startFlow(t, 2)
	made = madeChallenge(flow)
	h.clock.Advance(authn.DefaultChallengeTTL/5 + time.Second)
	old := begin(b, flow)
	if bytes.Equal(old.Challenge, made) {
		t.Fatal("begin handed out a challenge past the first fifth of its life")
	}
	if f := stored(flow); f.LoginOptions != nil {
		t.Fatal("the new challenge left the made options in the flow")
	}
	if r := b.postJSON(t, "/webauthn/login/finish?flow="+flow, b.assertion(k, old)); r.status != 200 {
		t.Fatalf("finish with a new challenge: %d %s", r.status, r.body)
	}

	// Dropped by a failed finish: the next begin makes a new one.
	flow = b.startFlow(t, 2)
	made = madeChallenge(flow)
	wrong := newKey(virtualwebauthn.AuthenticatorOptions{})
	if r := b.postJSON(t, "/webauthn/login/finish?flow="+flow, b.assertion(wrong, begin(b, flow))); r.status != 400 {
		t.Fatalf("finish with an unknown key: %d %s", r.status, r.body)
	}
	if again := begin(b, flow); bytes.Equal(again.Challenge, made) {
		t.Fatal("begin after a failed finish handed out the dropped challenge")
	}

	// Options that do not carry the flow's challenge (an older nhsid set
	// a challenge without clearing them) are not handed out.
	flow = b.startFlow(t, 2)
	f := stored(flow)
	f.LoginOptions = stored(b.startFlow(t, 2)).LoginOptions
	if err := h.store.DeleteFlow(ctx, flow); err != nil {
		t.Fatal(err)
	}
	if err := h.store.CreateFlow(ctx, f); err != nil {
		t.Fatal(err)
	}
	mismatched, err := virtualwebauthn.ParseAssertionOptions(string(f.LoginOptions))
	if err != nil {
		t.Fatal(err)
	}
	fresh := begin(b, flow)
	if bytes.Equal(fresh.Challenge, mismatched.Challenge) {
		t.Fatal("begin handed out options for another challenge")
	}
	if r := b.postJSON(t, "/webauthn/login/finish?flow="+flow, b.assertion(k, fresh)); r.status != 200 {
		t.Fatalf("finish after mismatched options: %d %s", r.status, r.body)
	}

	// A step-up's options depend on the person: its flow has none made.
	if made := madeChallenge(b.startFlow(t, 3)); made != nil {
		t.Fatal("a step-up flow was created with a login challenge")
	}
}
