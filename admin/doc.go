// Package admin is the admin REST API (/admin/v1, served on the admin
// listener) used by operators, RA staff and automation, and the service layer
// the RA console will share. Every call is authenticated with a bearer token
// and answered in JSON; errors are {"error","message"} through apierror.
// It calls policy, authn (invites) and idp (client registration); it owns no
// storage of its own.
package admin
