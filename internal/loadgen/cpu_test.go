package loadgen

import "testing"

// TestBackendDatabase: a backend's database is found with and without a
// cluster name in its command line, and nothing else is taken for one.
func TestBackendDatabase(t *testing.T) {
	for _, tc := range []struct{ cmdline, want string }{
		{"postgres: 15/main: postgres nhsid 127.0.0.1(40222) idle\x00\x00", "nhsid"},
		{"postgres: postgres scale 127.0.0.1(40222) idle", "scale"},
		{"postgres: 15/main: checkpointer ", ""},
		{"postgres: checkpointer ", ""},
		{"/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main", ""},
		{"", ""},
	} {
		if got := backendDatabase(tc.cmdline); got != tc.want {
			t.Errorf("backendDatabase(%q) = %q, want %q", tc.cmdline, got, tc.want)
		}
	}
}
