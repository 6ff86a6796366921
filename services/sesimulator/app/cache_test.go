package app

import "testing"

func TestCardCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := newCardCache(2)
	a, b, d := &loadedCard{conversationID: "a"}, &loadedCard{conversationID: "b"}, &loadedCard{conversationID: "d"}
	c.add("A", a)
	c.add("B", b)
	if _, ok := c.get("A"); !ok { // A is now the most recently used
		t.Fatal("A missing")
	}
	c.add("D", d)
	if _, ok := c.get("B"); ok {
		t.Error("B should have been evicted (least recently used)")
	}
	if got, ok := c.get("A"); !ok || got != a {
		t.Error("A evicted instead of B")
	}
	if c.len() != 2 {
		t.Errorf("len %d, want 2", c.len())
	}
	c.remove("A")
	if _, ok := c.get("A"); ok || c.len() != 1 {
		t.Error("remove did not remove")
	}
	c.add("D", a) // replacing keeps one entry
	if got, _ := c.get("D"); got != a || c.len() != 1 {
		t.Error("replace failed")
	}
}
