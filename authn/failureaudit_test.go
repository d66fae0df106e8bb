package authn

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/internal/apierror"
)

// liveRecorder records only while the context it is given is live, as the
// audit log's writers do.
type liveRecorder struct{ events []audit.Event }

func (l *liveRecorder) Record(ctx context.Context, e audit.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.events = append(l.events, e)
	return nil
}

func (l *liveRecorder) RecordGrouped(ctx context.Context, e audit.Event) error {
	return l.Record(ctx, e)
}

// TestSigninFailureAuditedAfterHangUp: a refused sign-in attempt is
// recorded even when its client closed the connection before the answer,
// and a request that ended only because its client left (499) records no
// failure.
func TestSigninFailureAuditedAfterHangUp(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   bool
	}{
		{http.StatusUnauthorized, true},
		{http.StatusInternalServerError, true},
		{apierror.StatusClientClosed, false},
		{http.StatusOK, false},
	} {
		rec := &liveRecorder{}
		s := &Service{audit: rec, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		ctx, cancel := context.WithCancel(context.Background())
		r := httptest.NewRequest(http.MethodPost, "/webauthn/login/finish", nil).WithContext(ctx)
		cancel() // the client hung up
		w := s.auditSigninFailures(httptest.NewRecorder(), r)
		w.WriteHeader(tc.status)
		if got := len(rec.events) == 1; got != tc.want {
			t.Errorf("status %d: recorded %v, want %v", tc.status, rec.events, tc.want)
			continue
		}
		if tc.want {
			if e := rec.events[0]; e.Type != audit.SigninFailure || e.Detail["status"] != tc.status {
				t.Errorf("status %d: recorded %+v", tc.status, e)
			}
		}
	}
}
