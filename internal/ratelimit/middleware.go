package ratelimit

import (
	"errors"
	"net/http"
	"strings"

	"github.com/nhsid/nhsid/internal/apierror"
	"github.com/nhsid/nhsid/internal/detach"
	"github.com/nhsid/nhsid/store"
)

// Classify names the class of a request, or "" when it is not limited.
func Classify(r *http.Request) string {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodPost && (p == "/webauthn/login/begin" || p == "/webauthn/login/finish"):
		return ClassLogin
	case r.Method == http.MethodPost && (p == "/webauthn/register/begin" || p == "/webauthn/register/finish"),
		r.Method == http.MethodGet && p == "/enrol":
		return ClassEnrol
	case r.Method == http.MethodPost && (p == "/oauth2/token" || p == "/oauth2/introspect" || p == "/oauth2/revoke" || p == "/oauth2/par"):
		return ClassToken
	case strings.HasPrefix(p, "/admin/v1/"):
		return ClassAdmin
	}
	return ""
}

// countsAsFailure reports whether a response of class with status is a
// failed attempt (a bad credential, invite, grant or token).
func countsAsFailure(class, path string, status int) bool {
	if status == http.StatusTooManyRequests || status < 400 || status >= 500 {
		return false
	}
	switch class {
	case ClassLogin:
		return path == "/webauthn/login/finish"
	case ClassEnrol, ClassToken:
		return true
	case ClassAdmin:
		return status == http.StatusUnauthorized
	}
	return false
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// tokenClientID is the client_id a token endpoint request names (HTTP
// Basic or the form); "" when none.
func tokenClientID(r *http.Request) string {
	if id, _, ok := r.BasicAuth(); ok {
		return id
	}
	if r.URL.Path != "/oauth2/token" {
		return ""
	}
	if err := r.ParseForm(); err != nil {
		return ""
	}
	id := r.PostForm.Get("client_id")
	if len(id) > 200 {
		return ""
	}
	return id
}

// Middleware limits the classified routes of next per source IP (ip gives
// the client address the server worked out, trusting only configured
// proxies), locks out IPs after repeated failures, and at the token
// endpoint also tracks failures per client_id. A nil Limiter passes
// everything through.
func (l *Limiter) Middleware(ip func(*http.Request) string, next http.Handler) http.Handler {
	if l == nil || l.cfg.Disabled {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		class := Classify(r)
		if class == "" {
			next.ServeHTTP(w, r)
			return
		}
		addr := ip(r)
		if l.Exempt(addr) {
			next.ServeHTTP(w, r)
			return
		}
		ctx := r.Context()
		fail := func(err error) bool {
			if err == nil {
				return false
			}
			if errors.Is(err, store.ErrUnavailable) {
				apierror.Write(w, r, l.log, err)
				return true
			}
			// Any other store error: fail open, loudly.
			l.log.ErrorContext(ctx, "rate limiter unavailable; request allowed", "err", err.Error())
			next.ServeHTTP(w, r)
			return true
		}
		ipKey := IPKey(class, addr)
		d, err := l.Check(ctx, ipKey)
		if fail(err) {
			return
		}
		if !d.Allowed {
			Refuse(w, r, l.log, d)
			return
		}
		d, err = l.Allow(ctx, class, addr)
		if fail(err) {
			return
		}
		if !d.Allowed {
			Refuse(w, r, l.log, d)
			return
		}
		var clientKey string
		if class == ClassToken {
			if id := tokenClientID(r); id != "" {
				clientKey = ClientKey(id)
				d, err = l.Check(ctx, clientKey)
				if fail(err) {
					return
				}
				if !d.Allowed {
					Refuse(w, r, l.log, d)
					return
				}
			}
		}
		sw := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if countsAsFailure(class, r.URL.Path, sw.status) {
			// Counted even when the client has hung up: guessing and
			// leaving before the answer must still lead to a lockout.
			ctx, cancel := detach.Context(ctx)
			defer cancel()
			if _, err := l.Fail(ctx, ipKey); err != nil {
				l.log.WarnContext(ctx, "record failure", "err", err.Error())
			}
			if clientKey != "" && sw.status == http.StatusUnauthorized {
				if _, err := l.Fail(ctx, clientKey); err != nil {
					l.log.WarnContext(ctx, "record failure", "err", err.Error())
				}
			}
		}
	})
}
