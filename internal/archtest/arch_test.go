package archtest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Doc        string
	Imports    []string
	Name       string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "github.com/nhsid/nhsid/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("only %d packages listed", len(pkgs))
	}
	return pkgs
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("%s has no package doc comment", p.ImportPath)
		}
	}
}

func TestImportDirection(t *testing.T) {
	const m = "github.com/nhsid/nhsid/"
	// forbidden[a] lists what package a must never import.
	forbidden := map[string][]string{
		"store":           {m},
		"policy":          {m + "idp", m + "authn", m + "admin", m + "federation", m + "internal/server", m + "store/", "net/http"},
		"authn":           {m + "idp", m + "admin", m + "federation", m + "internal/server", m + "store/"},
		"idp":             {m + "admin", m + "federation", m + "internal/server", m + "store/"},
		"admin":           {m + "internal/server", m + "store/"},
		"store/memory":    {m + "internal/server", m + "admin"},
		"store/postgres":  {m + "internal/server", m + "admin"},
		"internal/config": {m + "idp", m + "authn", m + "policy", m + "store"},
	}
	for _, p := range listPackages(t) {
		rules, ok := forbidden[strings.TrimPrefix(p.ImportPath, m)]
		if !ok {
			continue
		}
		for _, imp := range p.Imports {
			for _, bad := range rules {
				if imp == bad || strings.HasPrefix(imp, bad) && (strings.HasSuffix(bad, "/") || strings.HasPrefix(imp, bad+"/")) {
					t.Errorf("%s imports %s, which the architecture forbids", p.ImportPath, imp)
				}
			}
		}
	}
}
