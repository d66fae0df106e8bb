package idp_test

import (
	"bytes"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/store/memory"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestDiscoveryGolden(t *testing.T) {
	st := memory.New()
	p, err := idp.New(idp.Config{Issuer: "https://idp.example.nhs.uk/", GlobalSecret: secret('g'), SecretPepper: secret('p'), KEK: secret('k'),
		SigningAlgs: []string{idp.AlgRS256}}, idp.Deps{Store: st, People: st, Authn: newFakeAuthn()})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	p.Mount(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, idp.PathDiscovery, nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	got, _ := io.ReadAll(rec.Body)
	golden := filepath.Join("testdata", "discovery.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("discovery differs from %s (run with -update if intended):\n%s", golden, got)
	}
}

func TestMountMethods(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodPost, idp.PathDiscovery, http.StatusMethodNotAllowed},
		{http.MethodGet, idp.PathToken, http.StatusMethodNotAllowed},
		{http.MethodPut, idp.PathLogout, http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, e.srv.URL+tt.path, nil)
			resp, err := e.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}
