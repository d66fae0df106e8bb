package policy

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// RA levels a job role may carry (DESIGN.md, RA permissions).
const (
	RAManager   = "ra_manager"
	RAAgent     = "ra_agent"
	RASponsor   = "sponsor"
	RAIDChecker = "id_checker"
	RAUnlocker  = "unlocker"
)

var raLevels = map[string]bool{"": true, RAManager: true, RAAgent: true, RASponsor: true, RAIDChecker: true, RAUnlocker: true}

// JobRole is a national RBAC job role, S…:G…:R… (staff group, staff
// sub-group, job role) with the name of each part.
type JobRole struct {
	Code              string `json:"code"`
	StaffGroupName    string `json:"staff_group_name"`
	StaffSubgroupName string `json:"staff_subgroup_name"`
	Name              string `json:"name"`
	// RALevel gives the role's holders Registration Authority powers.
	RALevel string `json:"ra_level,omitempty"`
	// Assignable roles may be assigned by sponsors.
	Assignable bool `json:"assignable"`
	// DefaultActivities is the baseline policy: the activities a position
	// in this role gets when none are given.
	DefaultActivities []string `json:"default_activities,omitempty"`
}

// RoleName is the CIS2 role_name: the three names, each in double quotes,
// joined by colons.
func (j JobRole) RoleName() string {
	return strconv.Quote(j.StaffGroupName) + ":" + strconv.Quote(j.StaffSubgroupName) + ":" + strconv.Quote(j.Name)
}

// Activity is a B… activity code; Includes lists activities it implies.
type Activity struct {
	Code     string   `json:"code"`
	Name     string   `json:"name"`
	Includes []string `json:"includes,omitempty"`
}

// Workgroup is a named group positions may belong to.
type Workgroup struct {
	Code string `json:"code"`
	Name string `json:"name"`
}

// AreaOfWork is a P…:Q…:T… area of work.
type AreaOfWork struct {
	Code string `json:"code"`
	Name string `json:"name"`
}

// Catalogue is the national RBAC role catalogue.
type Catalogue struct {
	JobRoles    []JobRole    `json:"job_roles"`
	Activities  []Activity   `json:"activities"`
	Workgroups  []Workgroup  `json:"workgroups,omitempty"`
	AreasOfWork []AreaOfWork `json:"areas_of_work,omitempty"`
}

// Import limits.
const (
	MaxCatalogueBytes   = 4 << 20
	MaxCatalogueEntries = 20000
	maxNameLen          = 200
	maxListLen          = 200
)

var (
	roleCodeRe  = regexp.MustCompile(`^S[0-9]{1,8}:G[0-9]{1,8}:R[0-9]{1,8}$`)
	activityRe  = regexp.MustCompile(`^B[0-9]{1,8}$`)
	workgroupRe = regexp.MustCompile(`^[A-Z0-9]{1,20}$`)
	aowRe       = regexp.MustCompile(`^P[0-9]{1,8}:Q[0-9]{1,8}:T[0-9]{1,8}$`)
)

// JobRoleCode returns the R… part of a role code.
func JobRoleCode(code string) string {
	if i := strings.LastIndexByte(code, ':'); i >= 0 {
		return code[i+1:]
	}
	return code
}

// Index is a catalogue looked up by code.
type Index struct {
	Roles       map[string]JobRole
	Activities  map[string]Activity
	Workgroups  map[string]Workgroup
	AreasOfWork map[string]AreaOfWork
}

// NewIndex indexes c.
func NewIndex(c Catalogue) *Index {
	x := &Index{Roles: map[string]JobRole{}, Activities: map[string]Activity{}, Workgroups: map[string]Workgroup{}, AreasOfWork: map[string]AreaOfWork{}}
	for _, r := range c.JobRoles {
		x.Roles[r.Code] = r
	}
	for _, a := range c.Activities {
		x.Activities[a.Code] = a
	}
	for _, w := range c.Workgroups {
		x.Workgroups[w.Code] = w
	}
	for _, a := range c.AreasOfWork {
		x.AreasOfWork[a.Code] = a
	}
	return x
}

// Expand returns codes and every activity they include, transitively,
// sorted.
func (x *Index) Expand(codes []string) []string {
	seen := map[string]bool{}
	var walk func(string)
	walk = func(c string) {
		if seen[c] {
			return
		}
		seen[c] = true
		for _, inc := range x.Activities[c].Includes {
			walk(inc)
		}
	}
	for _, c := range codes {
		walk(c)
	}
	out := make([]string, 0, len(seen))
	for c := range seen {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// Merge returns c with other's entries added or replacing those with the
// same code, each list sorted by code.
func (c Catalogue) Merge(other Catalogue) Catalogue {
	x := NewIndex(c)
	y := NewIndex(other)
	for k, v := range y.Roles {
		x.Roles[k] = v
	}
	for k, v := range y.Activities {
		x.Activities[k] = v
	}
	for k, v := range y.Workgroups {
		x.Workgroups[k] = v
	}
	for k, v := range y.AreasOfWork {
		x.AreasOfWork[k] = v
	}
	return x.Catalogue()
}

// Catalogue returns the indexed entries as a catalogue sorted by code.
func (x *Index) Catalogue() Catalogue {
	var c Catalogue
	for _, v := range x.Roles {
		c.JobRoles = append(c.JobRoles, v)
	}
	for _, v := range x.Activities {
		c.Activities = append(c.Activities, v)
	}
	for _, v := range x.Workgroups {
		c.Workgroups = append(c.Workgroups, v)
	}
	for _, v := range x.AreasOfWork {
		c.AreasOfWork = append(c.AreasOfWork, v)
	}
	sort.Slice(c.JobRoles, func(i, j int) bool { return c.JobRoles[i].Code < c.JobRoles[j].Code })
	sort.Slice(c.Activities, func(i, j int) bool { return c.Activities[i].Code < c.Activities[j].Code })
	sort.Slice(c.Workgroups, func(i, j int) bool { return c.Workgroups[i].Code < c.Workgroups[j].Code })
	sort.Slice(c.AreasOfWork, func(i, j int) bool { return c.AreasOfWork[i].Code < c.AreasOfWork[j].Code })
	return c
}

// Validate checks c on its own terms, with references resolved against c
// merged into base (the catalogue already stored). Problems name the
// entry ("job_roles[2].code" or, for CSV, "line 7").
func (c Catalogue) Validate(base Catalogue, where func(kind string, i int) string) error {
	if where == nil {
		where = func(kind string, i int) string { return fmt.Sprintf("%s[%d]", kind, i) }
	}
	var probs []string
	add := func(format string, args ...any) {
		if len(probs) < 50 {
			probs = append(probs, fmt.Sprintf(format, args...))
		}
	}
	if n := len(c.JobRoles) + len(c.Activities) + len(c.Workgroups) + len(c.AreasOfWork); n > MaxCatalogueEntries {
		return &InvalidError{Problems: []string{fmt.Sprintf("too many entries (%d, at most %d)", n, MaxCatalogueEntries)}}
	}
	merged := NewIndex(base.Merge(c))
	name := func(at, field, v string) {
		if strings.TrimSpace(v) == "" || len(v) > maxNameLen || strings.ContainsAny(v, "\"\r\n") {
			add("%s.%s: required, at most %d characters, no quotes or line breaks", at, field, maxNameLen)
		}
	}
	seen := map[string]bool{}
	dup := func(at, kind, code string) {
		if seen[kind+code] {
			add("%s: duplicate code %q", at, code)
		}
		seen[kind+code] = true
	}
	for i, r := range c.JobRoles {
		at := where("job_roles", i)
		if !roleCodeRe.MatchString(r.Code) {
			add("%s.code: must look like S8000:G8000:R8000", at)
		}
		dup(at, "r", r.Code)
		name(at, "staff_group_name", r.StaffGroupName)
		name(at, "staff_subgroup_name", r.StaffSubgroupName)
		name(at, "name", r.Name)
		if !raLevels[r.RALevel] {
			add("%s.ra_level: must be empty or one of ra_manager, ra_agent, sponsor, id_checker, unlocker", at)
		}
		if len(r.DefaultActivities) > maxListLen {
			add("%s.default_activities: at most %d", at, maxListLen)
		}
		for _, a := range r.DefaultActivities {
			if _, ok := merged.Activities[a]; !ok {
				add("%s.default_activities: unknown activity %q", at, clip(a))
			}
		}
	}
	for i, a := range c.Activities {
		at := where("activities", i)
		if !activityRe.MatchString(a.Code) {
			add("%s.code: must look like B0825", at)
		}
		dup(at, "a", a.Code)
		name(at, "name", a.Name)
		if len(a.Includes) > maxListLen {
			add("%s.includes: at most %d", at, maxListLen)
		}
		for _, inc := range a.Includes {
			if inc == a.Code {
				add("%s.includes: an activity cannot include itself", at)
			} else if _, ok := merged.Activities[inc]; !ok {
				add("%s.includes: unknown activity %q", at, clip(inc))
			}
		}
	}
	for i, w := range c.Workgroups {
		at := where("workgroups", i)
		if !workgroupRe.MatchString(w.Code) {
			add("%s.code: 1 to 20 capital letters or digits", at)
		}
		dup(at, "w", w.Code)
		name(at, "name", w.Name)
	}
	for i, a := range c.AreasOfWork {
		at := where("areas_of_work", i)
		if !aowRe.MatchString(a.Code) {
			add("%s.code: must look like P0010:Q0100:T1000", at)
		}
		dup(at, "p", a.Code)
		name(at, "name", a.Name)
	}
	if len(probs) > 0 {
		return &InvalidError{Problems: probs}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 24 {
		return s[:24] + "…"
	}
	return s
}

// ParseCatalogueJSON reads a catalogue in JSON form, bounded in size, and
// validates it against base.
func ParseCatalogueJSON(data []byte, base Catalogue) (Catalogue, error) {
	if len(data) > MaxCatalogueBytes {
		return Catalogue{}, &InvalidError{Problems: []string{fmt.Sprintf("catalogue too large (at most %d bytes)", MaxCatalogueBytes)}}
	}
	var c Catalogue
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Catalogue{}, &InvalidError{Problems: []string{jsonProblem(data, err)}}
	}
	if dec.More() {
		return Catalogue{}, &InvalidError{Problems: []string{"catalogue: a single JSON object is expected"}}
	}
	if err := c.Validate(base, nil); err != nil {
		return Catalogue{}, err
	}
	return c, nil
}

// jsonProblem describes a JSON decoding error with its line number,
// without echoing input.
func jsonProblem(data []byte, err error) string {
	var se *json.SyntaxError
	var ute *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("line %d: JSON syntax error", lineAt(data, se.Offset))
	case errors.As(err, &ute):
		return fmt.Sprintf("line %d: field %q has the wrong type", lineAt(data, ute.Offset), ute.Field)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "catalogue: incomplete JSON"
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return "catalogue: " + clip(strings.TrimPrefix(err.Error(), "json: "))
	}
	return "catalogue: malformed JSON"
}

func lineAt(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

// csvColumns are the columns a CSV catalogue may have; kind and code are
// required. Lists (includes, default_activities) are separated by
// semicolons or spaces.
var csvColumns = map[string]bool{"kind": true, "code": true, "name": true, "staff_group_name": true,
	"staff_subgroup_name": true, "ra_level": true, "assignable": true, "default_activities": true, "includes": true}

// ParseCatalogueCSV reads a catalogue in CSV form: a header row, then one
// entry per row, its kind being job_role, activity, workgroup or
// area_of_work. Problems name the line.
func ParseCatalogueCSV(data []byte, base Catalogue) (Catalogue, error) {
	if len(data) > MaxCatalogueBytes {
		return Catalogue{}, &InvalidError{Problems: []string{fmt.Sprintf("catalogue too large (at most %d bytes)", MaxCatalogueBytes)}}
	}
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	header, err := r.Read()
	if err != nil {
		return Catalogue{}, &InvalidError{Problems: []string{"line 1: a header row is required"}}
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if !csvColumns[h] {
			return Catalogue{}, &InvalidError{Problems: []string{fmt.Sprintf("line 1: unknown column %q", clip(h))}}
		}
		if _, ok := col[h]; ok {
			return Catalogue{}, &InvalidError{Problems: []string{fmt.Sprintf("line 1: duplicate column %q", h)}}
		}
		col[h] = i
	}
	if _, ok := col["kind"]; !ok {
		return Catalogue{}, &InvalidError{Problems: []string{"line 1: the kind column is required"}}
	}
	if _, ok := col["code"]; !ok {
		return Catalogue{}, &InvalidError{Problems: []string{"line 1: the code column is required"}}
	}
	var c Catalogue
	lines := map[string][]int{}
	var probs []string
	for rows := 0; ; rows++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return Catalogue{}, &InvalidError{Problems: []string{fmt.Sprintf("line %d: malformed CSV", pe.Line)}}
			}
			return Catalogue{}, &InvalidError{Problems: []string{"malformed CSV"}}
		}
		line, _ := r.FieldPos(0)
		if rows >= MaxCatalogueEntries {
			return Catalogue{}, &InvalidError{Problems: []string{fmt.Sprintf("too many entries (at most %d)", MaxCatalogueEntries)}}
		}
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		switch kind := get("kind"); kind {
		case "job_role":
			assignable := false
			switch strings.ToLower(get("assignable")) {
			case "", "false", "no", "n", "0":
			case "true", "yes", "y", "1":
				assignable = true
			default:
				probs = append(probs, fmt.Sprintf("line %d: assignable must be true or false", line))
			}
			c.JobRoles = append(c.JobRoles, JobRole{Code: get("code"), StaffGroupName: get("staff_group_name"),
				StaffSubgroupName: get("staff_subgroup_name"), Name: get("name"), RALevel: get("ra_level"),
				Assignable: assignable, DefaultActivities: splitList(get("default_activities"))})
			lines["job_roles"] = append(lines["job_roles"], line)
		case "activity":
			c.Activities = append(c.Activities, Activity{Code: get("code"), Name: get("name"), Includes: splitList(get("includes"))})
			lines["activities"] = append(lines["activities"], line)
		case "workgroup":
			c.Workgroups = append(c.Workgroups, Workgroup{Code: get("code"), Name: get("name")})
			lines["workgroups"] = append(lines["workgroups"], line)
		case "area_of_work":
			c.AreasOfWork = append(c.AreasOfWork, AreaOfWork{Code: get("code"), Name: get("name")})
			lines["areas_of_work"] = append(lines["areas_of_work"], line)
		default:
			probs = append(probs, fmt.Sprintf("line %d: kind must be job_role, activity, workgroup or area_of_work", line))
		}
		if len(probs) >= 50 {
			break
		}
	}
	if len(probs) > 0 {
		return Catalogue{}, &InvalidError{Problems: probs}
	}
	err = c.Validate(base, func(kind string, i int) string { return fmt.Sprintf("line %d", lines[kind][i]) })
	if err != nil {
		return Catalogue{}, err
	}
	return c, nil
}

func splitList(s string) []string {
	f := strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == ' ' || r == ',' })
	if len(f) == 0 {
		return nil
	}
	return f
}
