package admin_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nhsid/nhsid/admin"
	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store/memory"
)

const token = "test-operator-token"

type raEnv struct {
	t     *testing.T
	srv   *httptest.Server
	store *memory.Store
	svc   *policy.Service
	ended []string
}

func newRAEnv(t *testing.T) *raEnv {
	t.Helper()
	st := memory.New()
	e := &raEnv{t: t, store: st}
	e.svc = &policy.Service{Store: st, Now: time.Now}
	e.svc.EndAccess = func(_ context.Context, uid, reason string) error {
		e.ended = append(e.ended, uid+":"+reason)
		return nil
	}
	api := &admin.API{Policy: e.svc, ClientStore: st, BootstrapToken: token}
	mux := http.NewServeMux()
	api.Mount(mux)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *raEnv) call(method, path, contentType string, body []byte, want int) map[string]any {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		e.t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, raw)
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

func (e *raEnv) jsonCall(method, path string, body any, want int) map[string]any {
	e.t.Helper()
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	return e.call(method, path, "application/json", raw, want)
}

func TestRAEndpoints(t *testing.T) {
	e := newRAEnv(t)
	sample, _ := policy.SampleCatalogueJSON()
	got := e.call("POST", "/admin/v1/roles", "application/json", sample, 201)
	if got["job_roles"].(float64) == 0 {
		t.Fatalf("import reply: %v", got)
	}
	e.call("POST", "/admin/v1/roles", "text/csv", []byte("kind,code,name\nactivity,B0901,New Activity\n"), 201)
	bad := e.call("POST", "/admin/v1/roles", "text/csv", []byte("kind,code,name\nactivity,B0902,Fine\nactivity,oops,Bad\n"), 400)
	if !strings.Contains(bad["message"].(string), "line 3") {
		t.Fatalf("CSV error without line: %v", bad)
	}
	cat := e.jsonCall("GET", "/admin/v1/roles", nil, 200)
	if len(cat["activities"].([]any)) != len(policy.SampleCatalogue().Activities)+1 {
		t.Fatalf("catalogue after imports: %v", cat["activities"])
	}

	e.jsonCall("POST", "/admin/v1/organisations", map[string]string{"code": "RX1", "name": "Trust One"}, 201)
	person := e.jsonCall("POST", "/admin/v1/people", map[string]any{"given_name": "Ada", "family_name": "Lovelace"}, 201)
	uid := person["uid"].(string)
	found := e.jsonCall("GET", "/admin/v1/people?q=ada+love", nil, 200)["items"].([]any)
	if len(found) != 1 || found[0].(map[string]any)["uid"] != uid {
		t.Fatalf("search by full name: %v", found)
	}
	if none := e.jsonCall("GET", "/admin/v1/people?q=velace", nil, 200)["items"].([]any); len(none) != 0 {
		t.Fatalf("search by the middle of a name: %v", none)
	}
	e.jsonCall("GET", "/admin/v1/people?q="+strings.Repeat("a", 101), nil, 400)

	pos := e.jsonCall("POST", "/admin/v1/people/"+uid+"/positions", map[string]any{"org_code": "RX1", "role_code": policy.SampleClinicalRole, "start": "2020-01-01", "end": "2099-12-31"}, 201)
	roleID := pos["person_roleid"].(string)
	if len(roleID) != 12 || len(pos["person_orgid"].(string)) != 12 {
		t.Fatalf("position ids: %v", pos)
	}
	if pos["end"] != "2100-01-01T00:00:00Z" || pos["start"] != "2020-01-01T00:00:00Z" {
		t.Fatalf("dates: start %v end %v", pos["start"], pos["end"])
	}
	e.jsonCall("POST", "/admin/v1/people/"+uid+"/positions", map[string]any{"org_code": "RX1", "role_code": "S9:G9:R9"}, 400)
	e.jsonCall("POST", "/admin/v1/people/"+uid+"/positions", map[string]any{"org_code": "RX1", "role_code": policy.SampleClinicalRole, "start": "yesterday"}, 400)
	e.jsonCall("POST", "/admin/v1/people/000000000000/positions", map[string]any{"org_code": "RX1", "role_code": policy.SampleClinicalRole}, 404)

	mgr := e.jsonCall("POST", "/admin/v1/people", map[string]any{"given_name": "Rita", "family_name": "Manager"}, 201)["uid"].(string)
	first := e.jsonCall("POST", "/admin/v1/people/"+mgr+"/positions", map[string]any{"org_code": "RX1", "role_code": policy.SampleRAManager}, 201)
	if first["bootstrap"] != true {
		t.Fatalf("first RA Manager not marked bootstrap: %v", first)
	}
	second := e.jsonCall("POST", "/admin/v1/people/"+uid+"/positions", map[string]any{"org_code": "RX1", "role_code": policy.SampleRAManager}, 201)
	if second["pending_approval"] != true {
		t.Fatalf("second RA Manager not pending: %v", second)
	}
	forbidden := e.jsonCall("POST", "/admin/v1/positions/"+second["person_roleid"].(string)+"/approve", nil, 403)
	if forbidden["error"] != "forbidden" || forbidden["message"] == "" {
		t.Fatalf("403 body: %v", forbidden)
	}

	list := e.jsonCall("GET", "/admin/v1/people/"+uid+"/positions", nil, 200)
	if n := len(list["items"].([]any)); n != 2 {
		t.Fatalf("positions listed: %d", n)
	}

	ver := e.jsonCall("POST", "/admin/v1/people/"+uid+"/verification", map[string]any{"evidence": []string{"passport", "utility_bill"}, "verified_on": "2026-01-05"}, 201)
	if ver["person"].(map[string]any)["id_assurance_level"].(float64) != 3 {
		t.Fatalf("verification reply: %v", ver)
	}
	e.jsonCall("POST", "/admin/v1/people/"+uid+"/verification", map[string]any{"evidence": []string{"hearsay"}}, 400)

	ended := e.jsonCall("DELETE", "/admin/v1/positions/"+roleID, nil, 200)
	if ended["ended_at"] == nil {
		t.Fatalf("ended position: %v", ended)
	}
	e.jsonCall("DELETE", "/admin/v1/positions/"+roleID, nil, 400)
	e.jsonCall("DELETE", "/admin/v1/positions/999999999999", nil, 404)
	if len(e.ended) != 1 || e.ended[0] != uid+":leaver" {
		t.Fatalf("EndAccess calls: %v", e.ended)
	}

	// Credential revocation.
	credID := []byte("credential-one")
	if err := e.store.CreateCredential(context.Background(), authn.Credential{ID: credID, PersonUID: uid, AAL: 3, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString(credID)
	rev := e.jsonCall("DELETE", "/admin/v1/people/"+uid+"/credentials/"+enc, nil, 200)
	if rev["revoked_at"] == nil {
		t.Fatalf("revoke reply: %v", rev)
	}
	e.jsonCall("DELETE", "/admin/v1/people/"+mgr+"/credentials/"+enc, nil, 404)
	e.jsonCall("DELETE", "/admin/v1/people/"+uid+"/credentials/!!", nil, 400)

	closed := e.jsonCall("POST", "/admin/v1/people/"+mgr+"/close", nil, 200)
	if closed["status"] != policy.StatusClosed {
		t.Fatalf("close reply: %v", closed)
	}
}
