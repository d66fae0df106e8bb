package onboarding

import (
	"context"
	"log/slog"
)

// Mailer sends an email. A deployment plugs in its mail relay; without one,
// LogMailer writes the message to the log (development and tests read the
// verification link from there).
type Mailer interface {
	Send(ctx context.Context, to, subject, body string) error
}

// LogMailer logs every message instead of sending it.
type LogMailer struct{ Log *slog.Logger }

// Send implements Mailer.
func (m LogMailer) Send(ctx context.Context, to, subject, body string) error {
	log := m.Log
	if log == nil {
		log = slog.Default()
	}
	log.InfoContext(ctx, "onboarding mail (not sent: log mailer)", "to", to, "subject", subject, "body", body)
	return nil
}
