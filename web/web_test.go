package web

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestEveryPageRenders(t *testing.T) {
	names, err := Pages()
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 5 {
		t.Fatalf("pages %v", names)
	}
	inline := regexp.MustCompile(`<script(\s[^>]*)?>\s*[^<\s]|\son[a-z]+=`)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			w := httptest.NewRecorder()
			// Pages may not assume any field is set: render with none.
			if err := Render(w, http.StatusTeapot, name, map[string]any{}); err != nil {
				t.Fatal(err)
			}
			body := w.Body.String()
			if w.Code != http.StatusTeapot || !strings.HasPrefix(body, "<!DOCTYPE html>") || !strings.Contains(body, `lang="en"`) {
				t.Fatalf("status %d body %.80q", w.Code, body)
			}
			if !strings.Contains(body, `href="#maincontent"`) || !strings.Contains(body, "/static/nhsuk-frontend.min.css") {
				t.Fatal("layout missing (skip link or stylesheet)")
			}
			if inline.MatchString(body) {
				t.Fatal("inline script or event handler attribute")
			}
		})
	}
}

func TestRenderEscapesAndRefusesUnknownPages(t *testing.T) {
	w := httptest.NewRecorder()
	if err := Render(w, 200, "error", map[string]string{"Heading": "<b>x</b>", "Message": `"><script>alert(1)</script>`}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(w.Body.String(), "<script>alert") || strings.Contains(w.Body.String(), "<b>x</b>") {
		t.Fatal("data not escaped")
	}
	if err := Render(httptest.NewRecorder(), 200, "no-such-page", nil); err == nil {
		t.Fatal("unknown page rendered")
	}
}

func TestStatic(t *testing.T) {
	h := http.StripPrefix("/static/", Static())
	tests := []struct {
		name, path, wantType string
		wantStatus           int
	}{
		{name: "stylesheet", path: "/static/nhsuk-frontend.min.css", wantType: "text/css", wantStatus: 200},
		{name: "ceremony script", path: "/static/webauthn.js", wantType: "javascript", wantStatus: 200},
		{name: "icon", path: "/static/images/nhsuk-icon-cross.svg", wantType: "image/svg", wantStatus: 200},
		{name: "no directory listing", path: "/static/images/", wantStatus: 404},
		{name: "missing file", path: "/static/nope.js", wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", tt.path, nil))
			if w.Code != tt.wantStatus || !strings.Contains(w.Header().Get("Content-Type"), tt.wantType) {
				t.Fatalf("%d %q", w.Code, w.Header().Get("Content-Type"))
			}
		})
	}
}

func TestCeremonyScriptUsesTheJSONHelpers(t *testing.T) {
	js, err := fs.ReadFile(staticFS, "static/webauthn.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"parseCreationOptionsFromJSON", "parseRequestOptionsFromJSON", "toJSON()", "data-flow", "data-invite", "/webauthn/login/finish?flow=", "/webauthn/register/finish"} {
		if !strings.Contains(string(js), want) {
			t.Errorf("webauthn.js lacks %q", want)
		}
	}
}

func TestStylesheetPointsAtServedImages(t *testing.T) {
	css, err := fs.ReadFile(staticFS, "static/nhsuk-frontend.min.css")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`url\((/static/[^)]+)\)`).FindAllSubmatch(css, -1) {
		if _, err := fs.Stat(staticFS, strings.TrimPrefix(string(m[1]), "/")); err != nil {
			t.Errorf("stylesheet refers to %s, which is not embedded", m[1])
		}
	}
	if strings.Contains(string(css), "url(/assets/") {
		t.Error("stylesheet still refers to /assets/")
	}
}
