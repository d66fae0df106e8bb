package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestAdminClientCommands: each `nhsid admin clients` command sends the
// admin API request the README names, with the token from NHSID_TOKEN.
func TestAdminClientCommands(t *testing.T) {
	type call struct{ method, path, body, auth string }
	var mu sync.Mutex
	var got []call
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, call{r.Method, r.URL.EscapedPath(), string(b), r.Header.Get("Authorization")})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"client_id":"c1"}`))
	}))
	defer api.Close()
	meta := filepath.Join(t.TempDir(), "patch.json")
	if err := os.WriteFile(meta, []byte(`{"client_name":"renamed"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want call
	}{
		{[]string{"update", "c/1", meta}, call{"PATCH", "/admin/v1/clients/c%2F1", `{"client_name":"renamed"}`, ""}},
		{[]string{"disable", "c1"}, call{"PATCH", "/admin/v1/clients/c1", `{"disabled":true}`, ""}},
		{[]string{"enable", "c1"}, call{"PATCH", "/admin/v1/clients/c1", `{"disabled":false}`, ""}},
		{[]string{"rotate-secret", "c1"}, call{"POST", "/admin/v1/clients/c1/secret", "", ""}},
		{[]string{"end-overlap", "c1"}, call{"DELETE", "/admin/v1/clients/c1/secret/previous", "", ""}},
	} {
		mu.Lock()
		got = nil
		mu.Unlock()
		cmd := exec.Command(binary, append([]string{"admin", "--server", api.URL, "clients"}, tc.args...)...)
		cmd.Env = append(os.Environ(), "NHSID_TOKEN=cli-test-token")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", tc.args, err, out)
		}
		if !strings.Contains(string(out), `"client_id": "c1"`) {
			t.Errorf("%v: output %q lacks the answer", tc.args, out)
		}
		tc.want.auth = "Bearer cli-test-token"
		mu.Lock()
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%v sent %+v, want %+v", tc.args, got, tc.want)
		}
		mu.Unlock()
	}
}
