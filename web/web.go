// Package web holds the compiled-in templates and static assets (NHS.UK
// frontend CSS, the WebAuthn ceremony script) of every browser page. Any
// package that serves pages may import it; it imports nothing from nhsid.
//
// Pages live in templates/<name>.html and define "title" and "content";
// templates/layout.html wraps them. Render("login", …) executes the layout
// with the login page's blocks. Pages use no inline script: the Content
// Security Policy is script-src 'self', so scripts are files in static/.
package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

var (
	once  sync.Once
	pages map[string]*template.Template
	perr  error
)

// funcs are available to every template.
var funcs = template.FuncMap{
	"aalName": func(aal int) string {
		switch aal {
		case 3:
			return "High assurance (AAL3)"
		case 2:
			return "Standard (AAL2)"
		default:
			return "Unknown"
		}
	},
}

func parse() (map[string]*template.Template, error) {
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("parse layout: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".html")
		if base == "layout" {
			continue
		}
		t, err := layout.Clone()
		if err != nil {
			return nil, fmt.Errorf("clone layout: %w", err)
		}
		if _, err := t.ParseFS(templateFS, n); err != nil {
			return nil, fmt.Errorf("parse %s: %w", n, err)
		}
		out[base] = t
	}
	return out, nil
}

// Pages returns the names of all pages.
func Pages() ([]string, error) {
	once.Do(func() { pages, perr = parse() })
	if perr != nil {
		return nil, perr
	}
	var out []string
	for n := range pages {
		out = append(out, n)
	}
	return out, nil
}

// Render executes page name with data inside the shared layout and writes
// it with status. The page is rendered to a buffer first, so a template
// error never leaves half a page.
func Render(w http.ResponseWriter, status int, name string, data any) error {
	once.Do(func() { pages, perr = parse() })
	if perr != nil {
		return perr
	}
	t, ok := pages[name]
	if !ok {
		return fmt.Errorf("render: no page %q", name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return fmt.Errorf("render %s: %w", name, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// Static serves the static assets; mount it with
// http.StripPrefix("/static/", web.Static()).
func Static() http.Handler {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") || r.URL.Path == "" {
			http.NotFound(w, r) // no directory listings
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}
