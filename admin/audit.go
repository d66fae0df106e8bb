package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/internal/apierror"
)

// auditChange records an admin change with its before and after states
// (nil for a creation or a deletion). States are reduced to their JSON
// fields; secrets never reach here (client secrets are returned once and
// not stored in clear).
func (a *API) auditChange(ctx context.Context, who actor, object, id, subject, org string, before, after any) error {
	detail := map[string]any{"object": object, "id": id}
	if before != nil {
		detail["before"] = asMap(before)
	}
	if after != nil {
		detail["after"] = asMap(after)
	}
	return audit.OrNop(a.Audit).Record(ctx, audit.Event{
		Type: audit.AdminChange, Actor: who.ID, Subject: subject, Org: org, Detail: detail,
	})
}

// asMap converts a state to a JSON object (as map) for an event's detail.
func asMap(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		return map[string]any{"unencodable": true}
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return map[string]any{"value": string(b)}
	}
	return m
}

// auditEventOut is an event as the API shows it.
type auditEventOut = audit.Event

// listAudit serves GET /admin/v1/audit?person=&org=&client=&type=&since=&until=&cursor=&limit=.
// type may repeat or be comma-separated; since and until are RFC 3339.
func (a *API) listAudit(w http.ResponseWriter, r *http.Request, _ actor) error {
	if a.AuditStore == nil {
		return apierror.New(http.StatusNotFound, "not_found", "The audit trail is not available here.", nil)
	}
	q := r.URL.Query()
	aq := audit.Query{Person: q.Get("person"), Org: q.Get("org"), Client: q.Get("client"), Limit: 100}
	bad := func(msg string, err error) error {
		return apierror.New(http.StatusBadRequest, "invalid_request", msg, err)
	}
	for _, v := range q["type"] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t == "" {
				continue
			}
			if !audit.Type(t).Valid() {
				return bad("Unknown event type "+strconv.Quote(t)+".", nil)
			}
			aq.Types = append(aq.Types, audit.Type(t))
		}
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &aq.Since}, {"until", &aq.Until}} {
		if s := q.Get(f.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return bad(f.name+" must be an RFC 3339 time.", err)
			}
			*f.dst = t
		}
	}
	if s := q.Get("cursor"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return bad("cursor is not valid.", err)
		}
		aq.Cursor = n
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return bad("limit must be 1 to 1000.", err)
		}
		aq.Limit = n
	}
	p, err := a.AuditStore.QueryAudit(r.Context(), aq)
	if err != nil {
		return err
	}
	out := list[auditEventOut]{Items: p.Events}
	if out.Items == nil {
		out.Items = []auditEventOut{}
	}
	if p.Next != 0 {
		out.NextCursor = strconv.FormatInt(p.Next, 10)
	}
	return reply(w, http.StatusOK, out)
}
