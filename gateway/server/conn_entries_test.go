package server

import "testing"

// entryMap keeps its pairs sorted whatever the order of adds, and finds,
// replaces and removes them.
func TestEntryMap(t *testing.T) {
	var m entryMap
	for _, e := range []uint64{3, 1, 7, 5, 9} {
		m.set(e, e*10)
	}
	m.set(5, 55)
	for i := 1; i < len(m); i++ {
		if m[i-1].entry >= m[i].entry {
			t.Fatalf("not sorted: %v", m)
		}
	}
	for e, want := range map[uint64]uint64{1: 10, 3: 30, 5: 55, 7: 70, 9: 90} {
		if id, ok := m.get(e); !ok || id != want {
			t.Errorf("get(%d) = %d, %v, want %d", e, id, ok, want)
		}
	}
	if _, ok := m.get(4); ok {
		t.Error("get(4) found an entry")
	}
	if id, ok := m.remove(7); !ok || id != 70 {
		t.Errorf("remove(7) = %d, %v", id, ok)
	}
	if _, ok := m.remove(7); ok {
		t.Error("7 removed twice")
	}
	for _, e := range []uint64{1, 3, 5, 9} {
		m.remove(e)
	}
	if m != nil {
		t.Errorf("empty map %v, want nil (no array kept)", m)
	}
}
