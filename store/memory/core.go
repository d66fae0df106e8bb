package memory

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/ory/fosite"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
)

var (
	_ policy.Store    = (*Store)(nil)
	_ authn.Store     = (*Store)(nil)
	_ idp.ClientStore = (*Store)(nil)
	_ idp.KeyStore    = (*Store)(nil)
)

// coreState holds the policy and authn aggregates, clients and signing keys.
// Every value is copied on the way in and out, so callers never share
// slices, maps or pointers with the store. Times are kept as PostgreSQL
// keeps them (UTC, microseconds) so both adapters return the same values.
type coreState struct {
	orgs       map[string]policy.Organisation
	people     map[string]policy.Person
	creds      map[string]authn.Credential // by string(ID)
	invites    map[string]authn.Invite     // by string(CodeHash)
	sessions   map[string]authn.Session    // by string(IDHash)
	sidIndex   map[string]string           // SID -> string(IDHash)
	flows      map[string]authn.Flow
	flowSpent  map[string]bool // flows whose login challenge was used up since set
	challenges map[string]challengeEntry
	clients    map[string]*idp.Client
	keys       map[string]idp.SigningKey
}

type challengeEntry struct {
	data      []byte
	expiresAt time.Time
}

func (c *coreState) init() {
	c.orgs = map[string]policy.Organisation{}
	c.people = map[string]policy.Person{}
	c.creds = map[string]authn.Credential{}
	c.invites = map[string]authn.Invite{}
	c.sessions = map[string]authn.Session{}
	c.sidIndex = map[string]string{}
	c.flows = map[string]authn.Flow{}
	c.flowSpent = map[string]bool{}
	c.challenges = map[string]challengeEntry{}
	c.clients = map[string]*idp.Client{}
	c.keys = map[string]idp.SigningKey{}
}

// coreTime normalises a time as PostgreSQL's timestamptz stores it.
func coreTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// notExpired reports whether something expiring at exp is still usable at now;
// a zero expiry never expires.
func notExpired(exp, now time.Time) bool {
	return exp.IsZero() || coreTime(now).Before(exp)
}

// pageKeys returns up to limit sorted keys after the cursor (all if limit <= 0).
func pageKeys[V any](m map[string]V, after string, limit int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		if k > after {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
	}
	return keys
}

// ---- policy.Store ----

func copyOrg(o policy.Organisation) policy.Organisation {
	o.CreatedAt = coreTime(o.CreatedAt)
	return o
}

// CreateOrganisation implements policy.Store.
func (s *Store) CreateOrganisation(_ context.Context, o policy.Organisation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.core.orgs[o.Code]; ok {
		return fmt.Errorf("create organisation %s: %w", o.Code, store.ErrExists)
	}
	s.core.orgs[o.Code] = copyOrg(o)
	return nil
}

// GetOrganisation implements policy.Store.
func (s *Store) GetOrganisation(_ context.Context, code string) (policy.Organisation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.core.orgs[code]
	if !ok {
		return policy.Organisation{}, fmt.Errorf("get organisation %s: %w", code, store.ErrNotFound)
	}
	return copyOrg(o), nil
}

// ListOrganisations implements policy.Store.
func (s *Store) ListOrganisations(_ context.Context, after string, limit int) ([]policy.Organisation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []policy.Organisation
	for _, k := range pageKeys(s.core.orgs, after, limit) {
		out = append(out, copyOrg(s.core.orgs[k]))
	}
	return out, nil
}

func copyPerson(p policy.Person) policy.Person {
	if len(p.Registrations) == 0 {
		p.Registrations = nil
	} else {
		p.Registrations = maps.Clone(p.Registrations)
	}
	p.CreatedAt = coreTime(p.CreatedAt)
	p.UpdatedAt = coreTime(p.UpdatedAt)
	return p
}

// CreatePerson implements policy.Store.
func (s *Store) CreatePerson(_ context.Context, p policy.Person) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.core.people[p.UID]; ok {
		return fmt.Errorf("create person %s: %w", p.UID, store.ErrExists)
	}
	s.core.people[p.UID] = copyPerson(p)
	return nil
}

// GetPerson implements policy.Store.
func (s *Store) GetPerson(_ context.Context, uid string) (policy.Person, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.core.people[uid]
	if !ok {
		return policy.Person{}, fmt.Errorf("get person %s: %w", uid, store.ErrNotFound)
	}
	return copyPerson(p), nil
}

// UpdatePerson implements policy.Store. The UID cannot change.
func (s *Store) UpdatePerson(_ context.Context, uid string, fn func(*policy.Person) error) (policy.Person, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.core.people[uid]
	if !ok {
		return policy.Person{}, fmt.Errorf("update person %s: %w", uid, store.ErrNotFound)
	}
	p := copyPerson(cur)
	if err := fn(&p); err != nil {
		return policy.Person{}, err
	}
	p.UID = uid
	p = copyPerson(p)
	s.core.people[uid] = p
	return copyPerson(p), nil
}

// ListPeople implements policy.Store.
func (s *Store) ListPeople(_ context.Context, after string, limit int) ([]policy.Person, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []policy.Person
	for _, k := range pageKeys(s.core.people, after, limit) {
		out = append(out, copyPerson(s.core.people[k]))
	}
	return out, nil
}

// SearchPeople implements policy.Store.
func (s *Store) SearchPeople(_ context.Context, k string, after string, limit int) ([]policy.Person, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []policy.Person
	for _, uid := range slices.Sorted(maps.Keys(s.core.people)) {
		if p := s.core.people[uid]; uid > after && p.FoundBy(k) {
			if limit > 0 && len(out) == limit {
				break
			}
			out = append(out, copyPerson(p))
		}
	}
	return out, nil
}

// ---- authn.CredentialStore ----

func copyCred(c authn.Credential) authn.Credential {
	c.ID = bytes.Clone(c.ID)
	c.AAGUID = bytes.Clone(c.AAGUID)
	c.Data = bytes.Clone(c.Data)
	c.CreatedAt = coreTime(c.CreatedAt)
	c.LastUsedAt = coreTime(c.LastUsedAt)
	c.RevokedAt = coreTime(c.RevokedAt)
	return c
}

// CreateCredential implements authn.CredentialStore.
func (s *Store) CreateCredential(_ context.Context, c authn.Credential) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.core.creds[string(c.ID)]; ok {
		return fmt.Errorf("create credential: %w", store.ErrExists)
	}
	s.core.creds[string(c.ID)] = copyCred(c)
	return nil
}

// GetCredential implements authn.CredentialStore.
func (s *Store) GetCredential(_ context.Context, id []byte) (authn.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.core.creds[string(id)]
	if !ok {
		return authn.Credential{}, fmt.Errorf("get credential: %w", store.ErrNotFound)
	}
	return copyCred(c), nil
}

// ListCredentials implements authn.CredentialStore.
func (s *Store) ListCredentials(_ context.Context, personUID string) ([]authn.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []authn.Credential
	for _, c := range s.core.creds {
		if c.PersonUID == personUID {
			out = append(out, copyCred(c))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return bytes.Compare(out[i].ID, out[j].ID) < 0
	})
	return out, nil
}

// UpdateCredential implements authn.CredentialStore. The ID cannot change.
func (s *Store) UpdateCredential(_ context.Context, id []byte, fn func(*authn.Credential) error) (authn.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.core.creds[string(id)]
	if !ok {
		return authn.Credential{}, fmt.Errorf("update credential: %w", store.ErrNotFound)
	}
	c := copyCred(cur)
	if err := fn(&c); err != nil {
		return authn.Credential{}, err
	}
	c.ID = bytes.Clone(id)
	c = copyCred(c)
	s.core.creds[string(id)] = c
	return copyCred(c), nil
}

// RecordCredentialUse implements authn.CredentialStore.
func (s *Store) RecordCredentialUse(_ context.Context, id []byte, signCount uint32, data []byte, at time.Time) (authn.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.core.creds[string(id)]
	if !ok || !c.RevokedAt.IsZero() {
		return authn.Credential{}, fmt.Errorf("record credential use: %w", store.ErrNotFound)
	}
	c = copyCred(c)
	c.SignCount, c.Data, c.LastUsedAt = signCount, bytes.Clone(data), coreTime(at)
	s.core.creds[string(id)] = c
	return copyCred(c), nil
}

// ---- authn.InviteStore ----

func copyInvite(inv authn.Invite) authn.Invite {
	inv.CodeHash = bytes.Clone(inv.CodeHash)
	inv.CreatedAt = coreTime(inv.CreatedAt)
	inv.ExpiresAt = coreTime(inv.ExpiresAt)
	inv.UsedAt = coreTime(inv.UsedAt)
	return inv
}

// CreateInvite implements authn.InviteStore.
func (s *Store) CreateInvite(_ context.Context, inv authn.Invite) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.core.invites[string(inv.CodeHash)]; ok {
		return fmt.Errorf("create invite: %w", store.ErrExists)
	}
	s.core.invites[string(inv.CodeHash)] = copyInvite(inv)
	return nil
}

// GetInvite implements authn.InviteStore.
func (s *Store) GetInvite(_ context.Context, codeHash []byte) (authn.Invite, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv, ok := s.core.invites[string(codeHash)]
	if !ok {
		return authn.Invite{}, fmt.Errorf("get invite: %w", store.ErrNotFound)
	}
	return copyInvite(inv), nil
}

// EnrolWithInvite implements authn.InviteStore. The credential is created
// for the invite's person, whatever c.PersonUID says.
func (s *Store) EnrolWithInvite(_ context.Context, codeHash []byte, now time.Time, c authn.Credential) (authn.Invite, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv, ok := s.core.invites[string(codeHash)]
	if !ok || !inv.UsedAt.IsZero() || !notExpired(inv.ExpiresAt, now) {
		return authn.Invite{}, fmt.Errorf("enrol with invite: %w", store.ErrNotFound)
	}
	if _, ok := s.core.creds[string(c.ID)]; ok {
		return authn.Invite{}, fmt.Errorf("enrol with invite: create credential: %w", store.ErrExists)
	}
	inv.UsedAt = coreTime(now)
	c.PersonUID = inv.PersonUID
	s.core.invites[string(codeHash)] = inv
	s.core.creds[string(c.ID)] = copyCred(c)
	return copyInvite(inv), nil
}

// ---- authn.SessionStore ----

func copySession(x authn.Session) authn.Session {
	x.IDHash = bytes.Clone(x.IDHash)
	x.CredentialID = bytes.Clone(x.CredentialID)
	if len(x.AMR) == 0 {
		x.AMR = nil
	} else {
		x.AMR = slices.Clone(x.AMR)
	}
	x.IdleTimeout = x.IdleTimeout.Truncate(time.Microsecond)
	x.AuthTime = coreTime(x.AuthTime)
	x.LastSeenAt = coreTime(x.LastSeenAt)
	x.ExpiresAt = coreTime(x.ExpiresAt)
	x.EndedAt = coreTime(x.EndedAt)
	return x
}

// CreateSession implements authn.SessionStore. Both IDHash and SID are unique.
func (s *Store) CreateSession(_ context.Context, x authn.Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.core.sessions[string(x.IDHash)]; ok {
		return fmt.Errorf("create session: %w", store.ErrExists)
	}
	if _, ok := s.core.sidIndex[x.SID]; ok {
		return fmt.Errorf("create session: sid: %w", store.ErrExists)
	}
	s.core.sessions[string(x.IDHash)] = copySession(x)
	s.core.sidIndex[x.SID] = string(x.IDHash)
	return nil
}

// GetSession implements authn.SessionStore.
func (s *Store) GetSession(_ context.Context, idHash []byte) (authn.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.core.sessions[string(idHash)]
	if !ok {
		return authn.Session{}, fmt.Errorf("get session: %w", store.ErrNotFound)
	}
	return copySession(x), nil
}

// GetSessionBySID implements authn.SessionStore.
func (s *Store) GetSessionBySID(_ context.Context, sid string) (authn.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key, ok := s.core.sidIndex[sid]
	if !ok {
		return authn.Session{}, fmt.Errorf("get session by sid: %w", store.ErrNotFound)
	}
	return copySession(s.core.sessions[key]), nil
}

// UpdateSession implements authn.SessionStore. The IDHash cannot change; a
// changed SID must stay unique.
func (s *Store) UpdateSession(_ context.Context, idHash []byte, fn func(*authn.Session) error) (authn.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := string(idHash)
	cur, ok := s.core.sessions[key]
	if !ok {
		return authn.Session{}, fmt.Errorf("update session: %w", store.ErrNotFound)
	}
	x := copySession(cur)
	if err := fn(&x); err != nil {
		return authn.Session{}, err
	}
	x.IDHash = bytes.Clone(idHash)
	if x.SID != cur.SID {
		if _, ok := s.core.sidIndex[x.SID]; ok {
			return authn.Session{}, fmt.Errorf("update session: sid: %w", store.ErrExists)
		}
		delete(s.core.sidIndex, cur.SID)
		s.core.sidIndex[x.SID] = key
	}
	x = copySession(x)
	s.core.sessions[key] = x
	return copySession(x), nil
}

// ListSessions implements authn.SessionStore: live sessions, newest
// (latest AuthTime) first.
func (s *Store) ListSessions(_ context.Context, personUID string) ([]authn.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []authn.Session
	for _, x := range s.core.sessions {
		if x.PersonUID == personUID && x.EndedAt.IsZero() {
			out = append(out, copySession(x))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].AuthTime.Equal(out[j].AuthTime) {
			return out[i].AuthTime.After(out[j].AuthTime)
		}
		return bytes.Compare(out[i].IDHash, out[j].IDHash) < 0
	})
	return out, nil
}

// ---- authn.FlowStore ----

func copyFlow(f authn.Flow) authn.Flow {
	f.BindingHash = bytes.Clone(f.BindingHash)
	f.LoginChallenge = bytes.Clone(f.LoginChallenge)
	f.LoginOptions = bytes.Clone(f.LoginOptions)
	f.LoginChallengeExpiresAt = coreTime(f.LoginChallengeExpiresAt)
	f.RequestedAt = coreTime(f.RequestedAt)
	f.AuthenticatedAt = coreTime(f.AuthenticatedAt)
	f.ExpiresAt = coreTime(f.ExpiresAt)
	return f
}

// CreateFlow implements authn.FlowStore.
func (s *Store) CreateFlow(_ context.Context, f authn.Flow) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.core.flows[f.ID]; ok {
		return fmt.Errorf("create flow: %w", store.ErrExists)
	}
	s.core.flows[f.ID] = copyFlow(f)
	return nil
}

// GetFlow implements authn.FlowStore.
func (s *Store) GetFlow(_ context.Context, id string, now time.Time) (authn.Flow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.core.flows[id]
	if !ok || !notExpired(f.ExpiresAt, now) {
		return authn.Flow{}, fmt.Errorf("get flow: %w", store.ErrNotFound)
	}
	return copyFlow(f), nil
}

// UpdateFlow implements authn.FlowStore. The ID cannot change.
func (s *Store) UpdateFlow(_ context.Context, id string, fn func(*authn.Flow) error) (authn.Flow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.core.flows[id]
	if !ok {
		return authn.Flow{}, fmt.Errorf("update flow: %w", store.ErrNotFound)
	}
	f := copyFlow(cur)
	if err := fn(&f); err != nil {
		return authn.Flow{}, err
	}
	f.ID = id
	f.LoginChallenge, f.LoginChallengeExpiresAt, f.LoginOptions = cur.LoginChallenge, cur.LoginChallengeExpiresAt, cur.LoginOptions
	f = copyFlow(f)
	s.core.flows[id] = f
	return copyFlow(f), nil
}

// SetFlowLoginChallenge implements authn.FlowStore.
func (s *Store) SetFlowLoginChallenge(_ context.Context, id string, bindingHash, data []byte, expiresAt, now time.Time) (authn.Flow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.core.flows[id]
	if !ok || !bytes.Equal(f.BindingHash, bindingHash) || !notExpired(f.ExpiresAt, now) {
		return authn.Flow{}, fmt.Errorf("set flow login challenge: %w", store.ErrNotFound)
	}
	f.LoginChallenge, f.LoginChallengeExpiresAt, f.LoginOptions = bytes.Clone(data), coreTime(expiresAt), nil
	s.core.flows[id] = f
	delete(s.core.flowSpent, id)
	return copyFlow(f), nil
}

// SpendFlowLogin implements authn.FlowStore.
func (s *Store) SpendFlowLogin(_ context.Context, id, sid string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.core.flows[id]
	if !ok {
		return nil
	}
	if s.core.flowSpent[id] {
		return fmt.Errorf("spend flow login: %w: login challenge already used", store.ErrConflict)
	}
	f.SessionSID, f.AuthenticatedAt = sid, coreTime(at)
	clearLoginChallenge(&f)
	s.core.flows[id] = f
	s.core.flowSpent[id] = true
	return nil
}

// clearLoginChallenge forgets f's login challenge and the options made
// with it.
func clearLoginChallenge(f *authn.Flow) {
	f.LoginChallenge, f.LoginChallengeExpiresAt, f.LoginOptions = nil, time.Time{}, nil
}

// DropFlowLoginChallenge implements authn.FlowStore.
func (s *Store) DropFlowLoginChallenge(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.core.flows[id]; ok {
		clearLoginChallenge(&f)
		s.core.flows[id] = f
	}
	return nil
}

// EndFlow implements authn.FlowStore.
func (s *Store) EndFlow(_ context.Context, id string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.core.flows[id]; ok {
		f.ExpiresAt = coreTime(at)
		s.core.flows[id] = f
	}
	return nil
}

// DeleteFlow implements authn.FlowStore. Deleting an unknown or already
// deleted flow is not an error.
func (s *Store) DeleteFlow(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.core.flows, id)
	delete(s.core.flowSpent, id)
	return nil
}

// ---- authn.ChallengeStore ----

// PutChallenge implements authn.ChallengeStore; it replaces any challenge
// under the same key.
func (s *Store) PutChallenge(_ context.Context, key string, data []byte, expiresAt time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.core.challenges[key] = challengeEntry{data: bytes.Clone(data), expiresAt: coreTime(expiresAt)}
	return nil
}

// TakeChallenge implements authn.ChallengeStore.
func (s *Store) TakeChallenge(_ context.Context, key string, now time.Time) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.core.challenges[key]
	delete(s.core.challenges, key)
	if !ok || !notExpired(c.expiresAt, now) {
		return nil, fmt.Errorf("take challenge: %w", store.ErrNotFound)
	}
	return c.data, nil
}

// ---- idp.ClientStore ----

// copyClient deep-copies a client the way a database round trip does: the
// metadata through its JSON form (so JWKS and slices are never shared), the
// secret hashes and the columns kept outside the JSON by hand.
func copyClient(c *idp.Client) (*idp.Client, error) {
	meta, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode client metadata: %w", err)
	}
	out := new(idp.Client)
	if err := json.Unmarshal(meta, out); err != nil {
		return nil, fmt.Errorf("decode client metadata: %w", err)
	}
	out.ID = c.ID
	out.Disabled = c.Disabled
	out.SecretHash = bytes.Clone(c.SecretHash)
	out.RotatedSecretHashes = nil
	for _, h := range c.RotatedSecretHashes {
		out.RotatedSecretHashes = append(out.RotatedSecretHashes, bytes.Clone(h))
	}
	out.CreatedAt = coreTime(c.CreatedAt)
	out.UpdatedAt = coreTime(c.UpdatedAt)
	return out, nil
}

// CreateClient implements idp.ClientStore.
func (s *Store) CreateClient(_ context.Context, c *idp.Client) error {
	if c == nil {
		return errors.New("create client: nil client")
	}
	cp, err := copyClient(c)
	if err != nil {
		return fmt.Errorf("create client %s: %w", c.ID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.core.clients[c.ID]; ok {
		return fmt.Errorf("create client %s: %w", c.ID, store.ErrExists)
	}
	s.core.clients[c.ID] = cp
	return nil
}

// GetClient implements idp.ClientStore and fosite.ClientManager. A missing
// client is both fosite.ErrNotFound and store.ErrNotFound.
func (s *Store) GetClient(_ context.Context, id string) (fosite.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.clientLocked(id)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// clientLocked returns a copy of a client; s.mu must be held. Other files
// of this package (fosite storage) use it to reload a request's client.
func (s *Store) clientLocked(id string) (*idp.Client, error) {
	c, ok := s.core.clients[id]
	if !ok {
		return nil, fmt.Errorf("get client %q: %w (%w)", id, fosite.ErrNotFound, store.ErrNotFound)
	}
	return copyClient(c)
}

// UpdateClient implements idp.ClientStore. The ID cannot change.
func (s *Store) UpdateClient(_ context.Context, id string, fn func(*idp.Client) error) (*idp.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.clientLocked(id)
	if err != nil {
		return nil, fmt.Errorf("update client: %w", err)
	}
	if err := fn(c); err != nil {
		return nil, err
	}
	c.ID = id
	stored, err := copyClient(c)
	if err != nil {
		return nil, fmt.Errorf("update client %s: %w", id, err)
	}
	s.core.clients[id] = stored
	return copyClient(stored)
}

// ListClients implements idp.ClientStore: ordered by ID after the cursor.
func (s *Store) ListClients(_ context.Context, after string, limit int) ([]*idp.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*idp.Client
	for _, k := range pageKeys(s.core.clients, after, limit) {
		c, err := copyClient(s.core.clients[k])
		if err != nil {
			return nil, fmt.Errorf("list clients: %w", err)
		}
		out = append(out, c)
	}
	return out, nil
}

// ---- idp.KeyStore ----

func copyKey(k idp.SigningKey) idp.SigningKey {
	k.PrivateEncrypted = bytes.Clone(k.PrivateEncrypted)
	k.PublicJWK = bytes.Clone(k.PublicJWK)
	k.CreatedAt = coreTime(k.CreatedAt)
	k.ActiveAt = coreTime(k.ActiveAt)
	k.RetiredAt = coreTime(k.RetiredAt)
	k.ExpiresAt = coreTime(k.ExpiresAt)
	k.RevokedAt = coreTime(k.RevokedAt)
	return k
}

// CreateKey implements idp.KeyStore.
func (s *Store) CreateKey(_ context.Context, k idp.SigningKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.core.keys[k.KID]; ok {
		return fmt.Errorf("create key %s: %w", k.KID, store.ErrExists)
	}
	s.core.keys[k.KID] = copyKey(k)
	return nil
}

// ListKeys implements idp.KeyStore: oldest (CreatedAt) first.
func (s *Store) ListKeys(_ context.Context) ([]idp.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]idp.SigningKey, 0, len(s.core.keys))
	for _, k := range s.core.keys {
		out = append(out, copyKey(k))
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].KID < out[j].KID
	})
	return out, nil
}

// UpdateKey implements idp.KeyStore. The KID cannot change.
func (s *Store) UpdateKey(_ context.Context, kid string, fn func(*idp.SigningKey) error) (idp.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.core.keys[kid]
	if !ok {
		return idp.SigningKey{}, fmt.Errorf("update key %s: %w", kid, store.ErrNotFound)
	}
	k := copyKey(cur)
	if err := fn(&k); err != nil {
		return idp.SigningKey{}, err
	}
	k.KID = kid
	k = copyKey(k)
	s.core.keys[kid] = k
	return copyKey(k), nil
}
