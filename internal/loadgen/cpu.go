package loadgen

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, 100 on every Linux platform Go supports.
const clockTicks = 100

// CPUProbe reads the CPU time (user+system, seconds) of the nhsid process
// and of the PostgreSQL backends serving one database, from /proc. It is
// Linux-only; elsewhere the readings are zero.
type CPUProbe struct {
	PID      int    // nhsid's process id (0: not measured)
	Database string // database name whose backends count as PostgreSQL's share ("" : not measured)
}

// CPUTimes is one reading.
type CPUTimes struct {
	Nhsid, Postgres float64
	pg              map[int]float64 // per backend, for Since
}

// Since is t minus an earlier reading. PostgreSQL backends are compared
// one by one: a backend that exited in between is left out (its time is
// lost, not subtracted), a new one counts from zero.
func (t CPUTimes) Since(earlier CPUTimes) CPUTimes {
	d := CPUTimes{Nhsid: t.Nhsid - earlier.Nhsid}
	for pid, v := range t.pg {
		d.Postgres += v - earlier.pg[pid]
	}
	return d
}

// Read takes a reading.
func (p CPUProbe) Read() CPUTimes {
	var t CPUTimes
	if p.PID > 0 {
		t.Nhsid = procCPU(p.PID)
	}
	if p.Database != "" {
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, d := range dirs {
			cmd, err := os.ReadFile(d + "/cmdline")
			if err != nil || !bytes.HasPrefix(cmd, []byte("postgres: ")) {
				continue
			}
			if backendDatabase(string(cmd)) == p.Database {
				pid, _ := strconv.Atoi(filepath.Base(d))
				v := procCPU(pid)
				if t.pg == nil {
					t.pg = map[int]float64{}
				}
				t.pg[pid] = v
				t.Postgres += v
			}
		}
	}
	return t
}

// backendDatabase is the database of a PostgreSQL backend's command line,
// "postgres: 15/main: user dbname 127.0.0.1(1234) idle", or the same
// without "15/main:" on a cluster without a cluster_name ("" if neither).
func backendDatabase(cmdline string) string {
	f := strings.Fields(strings.ReplaceAll(cmdline, "\x00", " "))
	if len(f) < 3 || f[0] != "postgres:" {
		return ""
	}
	if strings.HasSuffix(f[1], ":") {
		f = f[1:]
	}
	if len(f) < 3 {
		return ""
	}
	return f[2]
}

// procCPU is utime+stime of pid in seconds (0 if unreadable).
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / clockTicks
}
