package idp

import "sync"

// knownUseMax bounds the pairs a replica remembers (about 100 bytes each).
const knownUseMax = 100_000

// knownUse remembers (person, client) pairs whose client.first_use is in
// the audit trail, so that a person's later sign-ins to a client skip the
// look-up before each code. A pair is added only once the record is
// known to be there (found by the look-up, or committed with a code), and
// a record in the trail stays there, so a remembered pair is never wrong;
// a pair this replica does not know is looked up as before. When full it
// forgets an arbitrary pair, which costs one look-up later.
type knownUse struct {
	mu    sync.Mutex
	pairs map[string]struct{}
}

func knownUseKey(person, client string) string { return person + "\x00" + client }

func (k *knownUse) has(person, client string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.pairs[knownUseKey(person, client)]
	return ok
}

func (k *knownUse) add(person, client string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pairs == nil {
		k.pairs = make(map[string]struct{})
	}
	if len(k.pairs) >= knownUseMax {
		for key := range k.pairs {
			delete(k.pairs, key)
			break
		}
	}
	k.pairs[knownUseKey(person, client)] = struct{}{}
}
