package idp

import (
	"fmt"
	"testing"
)

func TestKnownUse(t *testing.T) {
	var k knownUse
	if k.has("p1", "c1") {
		t.Fatal("an empty set knows a pair")
	}
	k.add("p1", "c1")
	if !k.has("p1", "c1") {
		t.Fatal("an added pair is not known")
	}
	// The separator keeps ("p1", "c1") apart from ("p", "1c1") and the like.
	for _, pair := range [][2]string{{"p1", "c2"}, {"p2", "c1"}, {"p", "1\x00c1"}, {"c1", "p1"}} {
		if k.has(pair[0], pair[1]) {
			t.Fatalf("pair %q is known, only (p1, c1) was added", pair)
		}
	}
	for i := range knownUseMax + 10 {
		k.add(fmt.Sprint("person", i), "c")
	}
	if n := len(k.pairs); n != knownUseMax {
		t.Fatalf("%d pairs remembered, want the bound %d", n, knownUseMax)
	}
	if !k.has(fmt.Sprint("person", knownUseMax+9), "c") {
		t.Fatal("the newest pair was forgotten")
	}
}
