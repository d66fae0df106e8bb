// Package kubernetes holds nhsid's Kubernetes manifests (YAML, applied with
// `kubectl apply -k deploy/kubernetes`) and the test that checks them:
// every document parses, has the fields the API server requires, and the
// workloads run as non-root with probes, a PodDisruptionBudget and the
// Secrets they reference. No Go code here is built into nhsid.
package kubernetes
