package kubernetes

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// doc is one parsed manifest document.
type doc struct {
	file string
	m    map[string]any
}

// get walks m by keys; nil when any step is missing.
func get(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func list(v any) []any { l, _ := v.([]any); return l }

func str(v any) string { s, _ := v.(string); return s }

func loadDocs(t *testing.T) []doc {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var out []doc
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		for i := 0; ; i++ {
			var m map[string]any
			err := dec.Decode(&m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			if m == nil {
				continue
			}
			out = append(out, doc{file: f, m: m})
		}
	}
	return out
}

// TestManifests checks every document of every manifest: apiVersion, kind
// and metadata.name; workloads run as non-root without privilege
// escalation; the Deployment has several replicas, readiness and liveness
// probes and a PodDisruptionBudget selecting its pods; every Secret key a
// workload references exists in the example Secrets; and the migration Job
// exists.
func TestManifests(t *testing.T) {
	docs := loadDocs(t)
	byKind := map[string][]doc{}
	secretKeys := map[string]map[string]bool{}
	for _, d := range docs {
		kind, api, name := str(d.m["kind"]), str(d.m["apiVersion"]), str(get(d.m, "metadata", "name"))
		if kind == "" || api == "" || (name == "" && kind != "Kustomization") {
			t.Errorf("%s: a document lacks kind, apiVersion or metadata.name: %v/%v/%v", d.file, kind, api, name)
		}
		byKind[kind] = append(byKind[kind], d)
		if kind == "Secret" {
			keys := map[string]bool{}
			for _, field := range []string{"data", "stringData"} {
				if m, ok := d.m[field].(map[string]any); ok {
					for k := range m {
						keys[k] = true
					}
				}
			}
			secretKeys[name] = keys
		}
	}
	for _, kind := range []string{"Deployment", "Job", "Service", "ConfigMap", "PodDisruptionBudget", "Secret"} {
		if len(byKind[kind]) == 0 {
			t.Errorf("no %s in the manifests", kind)
		}
	}

	workloads := append(append([]doc{}, byKind["Deployment"]...), byKind["Job"]...)
	for _, d := range workloads {
		name := str(d.m["kind"]) + "/" + str(get(d.m, "metadata", "name"))
		t.Run(name, func(t *testing.T) {
			pod := get(d.m, "spec", "template", "spec")
			podNonRoot := get(pod, "securityContext", "runAsNonRoot") == true
			containers := list(get(pod, "containers"))
			if len(containers) == 0 {
				t.Fatal("no containers")
			}
			for _, c := range containers {
				cn := str(get(c, "name"))
				if !podNonRoot && get(c, "securityContext", "runAsNonRoot") != true {
					t.Errorf("container %s: runAsNonRoot is not set", cn)
				}
				if str(get(c, "image")) == "" {
					t.Errorf("container %s: no image", cn)
				}
				if str(d.m["kind"]) == "Deployment" {
					for _, probe := range []string{"readinessProbe", "livenessProbe"} {
						if get(c, probe) == nil {
							t.Errorf("container %s: no %s", cn, probe)
						}
					}
					if get(c, "securityContext", "allowPrivilegeEscalation") != false {
						t.Errorf("container %s: allowPrivilegeEscalation is not false", cn)
					}
				}
				for _, e := range list(get(c, "env")) {
					ref := get(e, "valueFrom", "secretKeyRef")
					if ref == nil {
						continue
					}
					sec, key := str(get(ref, "name")), str(get(ref, "key"))
					if !secretKeys[sec][key] {
						t.Errorf("container %s: env %s references secret %s key %s, missing from the example Secrets", cn, str(get(e, "name")), sec, key)
					}
				}
			}
			for _, v := range list(get(pod, "volumes")) {
				if sec := str(get(v, "secret", "secretName")); sec != "" && secretKeys[sec] == nil {
					t.Errorf("volume %s: secret %s is not among the example Secrets", str(get(v, "name")), sec)
				}
			}
			if str(d.m["kind"]) == "Deployment" {
				replicas, _ := get(d.m, "spec", "replicas").(int)
				if replicas < 2 {
					t.Errorf("replicas %d: want several", replicas)
				}
				labels, _ := get(d.m, "spec", "template", "metadata", "labels").(map[string]any)
				var covered bool
				for _, pdb := range byKind["PodDisruptionBudget"] {
					sel, _ := get(pdb.m, "spec", "selector", "matchLabels").(map[string]any)
					match := len(sel) > 0
					for k, v := range sel {
						match = match && fmt.Sprint(labels[k]) == fmt.Sprint(v)
					}
					minAvail, _ := get(pdb.m, "spec", "minAvailable").(int)
					if match && minAvail > 0 && minAvail < replicas {
						covered = true
					}
				}
				if !covered {
					t.Error("no PodDisruptionBudget selects the pods with minAvailable below the replica count")
				}
			}
		})
	}
}

// TestKustomizeBuilds runs `kubectl kustomize` (offline) over the
// directory when kubectl is installed, so the kustomization and every
// resource it lists parse as Kubernetes objects.
func TestKustomizeBuilds(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Log("kubectl not installed: only the YAML checks ran")
		return
	}
	out, err := exec.Command(kubectl, "kustomize", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, out)
	}
	for _, want := range []string{"kind: Deployment", "kind: PodDisruptionBudget", "kind: Job"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kustomize output lacks %q", want)
		}
	}
}
