package idp

import (
	"errors"
	"net/url"
	"reflect"
	"testing"
)

func TestParseACRAndMapping(t *testing.T) {
	tests := []struct {
		name      string
		form      url.Values
		clientAAL int
		wantMin   int
		wantErr   bool
		// acr claim for a session at AAL2 and AAL3
		acr2, acr3 string
	}{
		{name: "nothing requested", form: url.Values{}, wantMin: 0, acr2: "AAL2_ANY", acr3: "AAL3_ANY"},
		{name: "client minimum applies", form: url.Values{}, clientAAL: 3, wantMin: 3, acr2: "AAL2_ANY", acr3: "AAL3_ANY"},
		{name: "AAL3_ANY", form: url.Values{"acr_values": {"AAL3_ANY"}}, wantMin: 3, acr2: "AAL2_ANY", acr3: "AAL3_ANY"},
		{name: "AAL2_OR_AAL3_ANY", form: url.Values{"acr_values": {"AAL2_OR_AAL3_ANY"}}, wantMin: 2, acr2: "AAL2_OR_AAL3_ANY", acr3: "AAL2_OR_AAL3_ANY"},
		{name: "AAL3 satisfies AAL2_ANY", form: url.Values{"acr_values": {"AAL2_ANY"}}, wantMin: 2, acr2: "AAL2_ANY", acr3: "AAL2_ANY"},
		{name: "AAL3_FIDO2 like AAL3_ANY", form: url.Values{"acr_values": {"AAL3_FIDO2"}}, wantMin: 3, acr2: "AAL2_ANY", acr3: "AAL3_FIDO2"},
		{name: "first satisfied wins", form: url.Values{"acr_values": {"AAL3_ANY AAL2_ANY"}}, wantMin: 2, acr2: "AAL2_ANY", acr3: "AAL3_ANY"},
		{name: "client minimum over request", form: url.Values{"acr_values": {"AAL2_ANY"}}, clientAAL: 3, wantMin: 3, acr2: "AAL2_ANY", acr3: "AAL2_ANY"},
		{name: "unknown ignored", form: url.Values{"acr_values": {"urn:unknown AAL3_ANY"}}, wantMin: 3, acr2: "AAL2_ANY", acr3: "AAL3_ANY"},
		{name: "unknown only ignored", form: url.Values{"acr_values": {"urn:unknown"}}, wantMin: 0, acr2: "AAL2_ANY", acr3: "AAL3_ANY"},
		{name: "essential unknown fails", form: url.Values{"claims": {`{"id_token":{"acr":{"essential":true,"values":["urn:unknown"]}}}`}}, wantErr: true},
		{name: "essential known", form: url.Values{"acr_values": {"AAL2_ANY"}, "claims": {`{"id_token":{"acr":{"essential":true,"value":"AAL3_ANY"}}}`}}, wantMin: 3, acr2: "AAL2_ANY", acr3: "AAL3_ANY"},
		{name: "voluntary claims acr", form: url.Values{"claims": {`{"id_token":{"acr":{"values":["AAL2_ANY","urn:x"]}}}`}}, wantMin: 2, acr2: "AAL2_ANY", acr3: "AAL2_ANY"},
		{name: "bad claims JSON", form: url.Values{"claims": {`{`}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseACR(tt.form, tt.clientAAL)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("want error, got %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.MinAAL != tt.wantMin {
				t.Errorf("MinAAL = %d, want %d", got.MinAAL, tt.wantMin)
			}
			if a := acrFor(got, 2); a != tt.acr2 {
				t.Errorf("acr at AAL2 = %q, want %q", a, tt.acr2)
			}
			if a := acrFor(got, 3); a != tt.acr3 {
				t.Errorf("acr at AAL3 = %q, want %q", a, tt.acr3)
			}
		})
	}
}

func TestEssentialUnknownIsUnmet(t *testing.T) {
	_, err := parseACR(url.Values{"claims": {`{"id_token":{"acr":{"essential":true,"values":["x"]}}}`}}, 0)
	if !errors.Is(err, errUnmetAuthentication) {
		t.Fatalf("err = %v", err)
	}
}

func TestSecretHasher(t *testing.T) {
	h := SecretHasher{Pepper: []byte("0123456789abcdef0123456789abcdef")}
	ctx := t.Context()
	sum, err := h.Hash(ctx, []byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	if len(sum) != 32 {
		t.Fatalf("hash length %d", len(sum))
	}
	tests := []struct {
		name   string
		hasher SecretHasher
		secret string
		ok     bool
	}{
		{"same secret", h, "s3cret", true},
		{"other secret", h, "s3cret!", false},
		{"other pepper", SecretHasher{Pepper: []byte("another pepper, 32 bytes long!!!")}, "s3cret", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.hasher.Compare(ctx, sum, []byte(tt.secret))
			if (err == nil) != tt.ok {
				t.Fatalf("Compare err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestSessionCloneIsDeep(t *testing.T) {
	s := NewSession()
	s.SID = "sid1"
	s.AMR = []string{"hwk"}
	s.IDTokenClaims().Extra["x"] = "1"
	c := s.Clone().(*Session)
	c.AMR[0] = "swk"
	c.IDTokenClaims().Extra["x"] = "2"
	c.JWTClaims.Extra["y"] = 1
	if s.AMR[0] != "hwk" || s.IDTokenClaims().Extra["x"] != "1" || s.JWTClaims.Extra["y"] != nil {
		t.Fatal("clone shares state with original")
	}
	if !reflect.DeepEqual(c.SessionID(), "sid1") {
		t.Fatal("SessionID lost")
	}
	if c.GetJWTHeader().Extra["typ"] != "at+jwt" {
		t.Fatal("access token typ must be at+jwt")
	}
}
