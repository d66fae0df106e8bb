package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/internal/apierror"
)

type ctxKey int

const (
	requestIDKey ctxKey = iota
	clientIPKey
)

// RequestID returns the request id set by the middleware.
func RequestID(ctx context.Context) string {
	s, _ := ctx.Value(requestIDKey).(string)
	return s
}

// ClientIP returns the client address worked out by the middleware.
func ClientIP(ctx context.Context) string {
	s, _ := ctx.Value(clientIPKey).(string)
	return s
}

// statusWriter records the status code.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument wraps h with: request id, client IP (trusting X-Forwarded-For
// only from trusted proxies), panic recovery, body limit, access log (path
// only, never the query string, which can carry codes and invites) and
// metrics.
type instrument struct {
	log      *slog.Logger
	trusted  []netip.Prefix
	maxBody  int64
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	listener string
	// inner, when set, wraps the mux inside the request context (rate
	// limits and request deadlines; limits.go).
	inner func(http.Handler) http.Handler
}

func newMetrics(reg prometheus.Registerer) (*prometheus.CounterVec, *prometheus.HistogramVec) {
	req := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nhsid_http_requests_total", Help: "HTTP requests by listener, route and status class.",
	}, []string{"listener", "route", "code"})
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "nhsid_http_request_duration_seconds", Help: "HTTP request latency by listener and route.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"listener", "route"})
	reg.MustRegister(req, lat)
	return req, lat
}

func (m *instrument) wrap(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			var b [12]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		ip := m.clientIP(r)
		ctx := context.WithValue(r.Context(), requestIDKey, id)
		ctx = context.WithValue(ctx, clientIPKey, ip)
		ctx = audit.WithRequest(ctx, audit.RequestInfo{RequestID: id, IP: ip, UserAgent: r.UserAgent()})
		r = r.WithContext(ctx)
		w.Header().Set("X-Request-Id", id)
		if m.maxBody > 0 && r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, m.maxBody)
		}
		sw := &statusWriter{ResponseWriter: w}
		_, route := mux.Handler(r)
		if route == "" {
			route = "unmatched"
		}
		defer func() {
			if p := recover(); p != nil {
				m.log.ErrorContext(ctx, "panic", "request_id", id, "route", route, "panic", slog.AnyValue(p))
				if sw.status == 0 {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusInternalServerError)
					_, _ = w.Write([]byte(`{"error":"server_error","message":"Something went wrong on our side."}` + "\n"))
				}
				sw.status = http.StatusInternalServerError
			}
			d := time.Since(start)
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			if status >= 500 && apierror.ClientGone(r) {
				// Nobody received the error: the client hung up while
				// the request waited (often the cause of the error).
				status = apierror.StatusClientClosed
			}
			m.requests.WithLabelValues(m.listener, route, strconv.Itoa(status/100)+"xx").Inc()
			m.latency.WithLabelValues(m.listener, route).Observe(d.Seconds())
			m.log.LogAttrs(ctx, slog.LevelInfo, "http",
				slog.String("request_id", id), slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.Int("status", status), slog.Int("bytes", sw.bytes), slog.Duration("duration", d),
				slog.String("client_ip", ip), slog.String("listener", m.listener))
		}()
		var h http.Handler = mux
		if m.inner != nil {
			h = m.inner(mux)
		}
		h.ServeHTTP(sw, r)
	})
}

func validRequestID(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func (m *instrument) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || !m.isTrusted(addr) {
		return host
	}
	// Walk X-Forwarded-For from the right, skipping trusted proxies.
	parts := strings.Split(r.Header.Get("X-Forwarded-For"), ",")
	for i := len(parts) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(parts[i]))
		if err != nil {
			break
		}
		if !m.isTrusted(a) {
			return a.String()
		}
		host = a.String()
	}
	return host
}

func (m *instrument) isTrusted(a netip.Addr) bool {
	for _, p := range m.trusted {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// securityHeaders sets the headers every response carries.
func securityHeaders(h http.Handler, hsts bool) http.Handler {
	set := baseSecurityHeaders
	if hsts {
		set = append(append([]securityHeader(nil), set...), securityHeader{"Strict-Transport-Security", []string{"max-age=31536000; includeSubDomains"}})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		for _, sh := range set {
			hd[sh.key] = sh.value
		}
		h.ServeHTTP(w, r)
	})
}

// securityHeader is one header every response carries. Its value is
// shared by every response, not allocated for each (six allocations per
// request, 4 % of the memory allocated per token request); a handler that
// changes one replaces the slice (Set) or outgrows it (Add: length and
// capacity are 1), never writes into it.
type securityHeader struct {
	key   string // canonical
	value []string
}

var baseSecurityHeaders = []securityHeader{
	{"Content-Security-Policy", []string{"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"}},
	{"X-Content-Type-Options", []string{"nosniff"}},
	{"X-Frame-Options", []string{"DENY"}},
	{"Referrer-Policy", []string{"no-referrer"}},
	{"Cross-Origin-Opener-Policy", []string{"same-origin"}},
	{"Permissions-Policy", []string{"camera=(), microphone=(), geolocation=()"}},
}
