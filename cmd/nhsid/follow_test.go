package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nhsid/nhsid/audit"
)

// TestAuditFollow: `nhsid audit follow --state-file` streams the sealed
// records, keeps streaming new ones as they are sealed, stops cleanly on
// SIGINT with its position saved, and resumes there.
func TestAuditFollow(t *testing.T) {
	ctx := context.Background()
	u, _, s := auditDB(t)
	l := audit.NewLog(s, audit.Options{})
	sealer := &audit.Sealer{Store: s}
	add := func(n int) {
		t.Helper()
		for range n {
			if err := l.Record(ctx, audit.Event{Type: audit.TokenIssued, Client: "c"}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := sealer.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(t.TempDir(), "follow.pos")
	follow := func(wantFrom, wantTo int64, whileRunning func()) {
		t.Helper()
		cmd := exec.Command(binary, "audit", "follow", "--database-url="+u, "--state-file", state, "--interval", "100ms")
		cmd.Env = append(os.Environ(), "NHSID_CONFIG=", "NHSID_DATABASE_URL=")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		ran := false
		for pos := wantFrom; pos <= wantTo; pos++ {
			if !lines.Scan() {
				t.Fatalf("follow stopped before position %d: %v\n%s", pos, lines.Err(), stderr.String())
			}
			var line audit.FollowLine
			if err := json.Unmarshal(lines.Bytes(), &line); err != nil || line.ChainPos != pos || line.Event == nil || line.Type != audit.TokenIssued {
				t.Fatalf("line %s, want position %d: %v", lines.Bytes(), pos, err)
			}
			if !ran && whileRunning != nil && pos == wantFrom+1 {
				whileRunning() // records sealed while it runs show up too
				ran = true
			}
		}
		// The position is saved once the batch is flushed; wait for it.
		deadline := time.Now().Add(10 * time.Second)
		for {
			raw, _ := os.ReadFile(state)
			if strings.TrimSpace(string(raw)) == strconv.FormatInt(wantTo+1, 10) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("state file holds %q, want %d", raw, wantTo+1)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("follow after SIGINT: %v\n%s", err, stderr.String())
		}
	}
	add(3)
	follow(1, 5, func() { add(2) })
	add(2)
	follow(6, 7, nil) // resumed from the state file: nothing repeated
}
