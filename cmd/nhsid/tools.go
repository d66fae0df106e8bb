//go:build tools

// Package main: this file only pins modules that packages under construction
// will import, so go mod tidy keeps them. It is never built.
package main

import (
	_ "github.com/chromedp/chromedp"
	_ "github.com/coreos/go-oidc/v3/oidc"
	_ "github.com/crewjam/saml"
	_ "github.com/descope/virtualwebauthn"
	_ "github.com/go-webauthn/webauthn/webauthn"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/pressly/goose/v3"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/russellhaering/goxmldsig"
	_ "github.com/spf13/cobra"
	_ "golang.org/x/oauth2"
	_ "gopkg.in/yaml.v3"
)
