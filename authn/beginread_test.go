package authn_test

import (
	"bytes"
	"context"
	"encoding/base64"
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
	// a challenge without clearing them) are not handed out. (Another
	// browser's begin first takes what this process kept of the flow, so
	// that the next begin reads it.)
	flow = b.startFlow(t, 2)
	if r, _ := h.browser().loginBegin(t, flow); r.status != 400 {
		t.Fatalf("begin from another browser: %d %s", r.status, r.body)
	}
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

// TestFirstBeginReadsNoFlow: the first begin of a flow this process
// started answers from what it kept, without reading the flow; every
// later begin, and a begin from another browser (which also spends what
// was kept), reads it as before. Past the young window nothing kept is
// handed out.
func TestFirstBeginReadsNoFlow(t *testing.T) {
	h := newHarness(t)
	b := h.browser()
	reads := func() int32 { return h.flowReads.n.Load() }

	flow := b.startFlow(t, 2)
	before := reads()
	r, first := b.loginBegin(t, flow)
	if first == nil {
		t.Fatalf("begin: %d %s", r.status, r.body)
	}
	if n := reads() - before; n != 0 {
		t.Fatalf("the first begin read the flow %d times", n)
	}
	_, second := b.loginBegin(t, flow)
	if second == nil || !bytes.Equal(second.Challenge, first.Challenge) {
		t.Fatal("the second begin did not hand out the same challenge")
	}
	if n := reads() - before; n != 1 {
		t.Fatalf("the second begin read the flow %d times, want 1", n)
	}

	// Another browser first: refused as before, and the flow's own
	// browser then reads the flow.
	flow = b.startFlow(t, 2)
	if r, _ := h.browser().loginBegin(t, flow); r.status != 400 || r.errorCode(t) != "invalid_flow" {
		t.Fatalf("begin from another browser: %d %s", r.status, r.body)
	}
	before = reads()
	if _, opts := b.loginBegin(t, flow); opts == nil || reads()-before != 1 {
		t.Fatalf("begin after another browser's: options %v, %d reads", opts != nil, reads()-before)
	}

	// Past the first fifth of the challenge's life: read, and a new one.
	flow = b.startFlow(t, 2)
	made, err := h.store.GetFlow(context.Background(), flow, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(authn.DefaultChallengeTTL/5 + time.Second)
	before = reads()
	_, old := b.loginBegin(t, flow)
	if old == nil || reads()-before == 0 {
		t.Fatal("a begin past the young window did not read the flow")
	}
	if bytes.Contains(made.LoginOptions, []byte(base64.RawURLEncoding.EncodeToString(old.Challenge))) {
		t.Fatal("a begin past the young window handed out the kept challenge")
	}
}
