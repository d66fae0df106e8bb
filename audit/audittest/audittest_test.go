package audittest

import (
	"context"
	"testing"

	"github.com/nhsid/nhsid/audit"
)

// TestRecorder: events are kept in order and found by type; a live
// recorder refuses a cancelled context, a plain one does not.
func TestRecorder(t *testing.T) {
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	var plain Recorder
	live := Recorder{Live: true}
	for _, r := range []*Recorder{&plain, &live} {
		_ = r.Record(context.Background(), audit.Event{Type: audit.SigninSuccess})
		_ = r.RecordGrouped(context.Background(), audit.Event{Type: audit.Userinfo})
	}
	if err := plain.Record(gone, audit.Event{Type: audit.SigninFailure}); err != nil {
		t.Errorf("plain recorder refused a cancelled context: %v", err)
	}
	if err := live.Record(gone, audit.Event{Type: audit.SigninFailure}); err == nil {
		t.Error("live recorder took a cancelled context")
	}
	if got := plain.Events(); len(got) != 3 || got[0].Type != audit.SigninSuccess || got[2].Type != audit.SigninFailure {
		t.Errorf("plain: %+v", got)
	}
	if len(live.Events()) != 2 || len(live.Of(audit.Userinfo)) != 1 || len(live.Of(audit.SigninFailure)) != 0 {
		t.Errorf("live: %+v", live.Events())
	}
}
