package lru

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestCacheEvictsTheLeastRecentlyUsed(t *testing.T) {
	type step struct {
		op      string // add, get, peek, remove, clear
		key     int
		want    []int // keys after the step, most recent first
		evicted int   // key evicted by add; -1 none
		found   bool  // get, peek, remove
	}
	tests := []struct {
		name  string
		cap   int
		steps []step
	}{
		{"fills up then evicts the oldest", 2, []step{
			{op: "add", key: 1, want: []int{1}, evicted: -1},
			{op: "add", key: 2, want: []int{2, 1}, evicted: -1},
			{op: "add", key: 3, want: []int{3, 2}, evicted: 1},
		}},
		{"get makes an entry recent", 2, []step{
			{op: "add", key: 1, want: []int{1}, evicted: -1},
			{op: "add", key: 2, want: []int{2, 1}, evicted: -1},
			{op: "get", key: 1, want: []int{1, 2}, found: true},
			{op: "add", key: 3, want: []int{3, 1}, evicted: 2},
			{op: "get", key: 2, want: []int{3, 1}, found: false},
		}},
		{"peek does not", 2, []step{
			{op: "add", key: 1, want: []int{1}, evicted: -1},
			{op: "add", key: 2, want: []int{2, 1}, evicted: -1},
			{op: "peek", key: 1, want: []int{2, 1}, found: true},
			{op: "add", key: 3, want: []int{3, 2}, evicted: 1},
		}},
		{"adding a cached key updates it and evicts nothing", 2, []step{
			{op: "add", key: 1, want: []int{1}, evicted: -1},
			{op: "add", key: 2, want: []int{2, 1}, evicted: -1},
			{op: "add", key: 1, want: []int{1, 2}, evicted: -1},
		}},
		{"remove frees a slot for reuse", 2, []step{
			{op: "add", key: 1, want: []int{1}, evicted: -1},
			{op: "add", key: 2, want: []int{2, 1}, evicted: -1},
			{op: "remove", key: 2, want: []int{1}, found: true},
			{op: "remove", key: 2, want: []int{1}, found: false},
			{op: "add", key: 3, want: []int{3, 1}, evicted: -1},
			{op: "add", key: 4, want: []int{4, 3}, evicted: 1},
		}},
		{"clear empties it", 3, []step{
			{op: "add", key: 1, want: []int{1}, evicted: -1},
			{op: "clear", want: []int{}},
			{op: "add", key: 2, want: []int{2}, evicted: -1},
		}},
		{"capacity below one is one", 0, []step{
			{op: "add", key: 1, want: []int{1}, evicted: -1},
			{op: "add", key: 2, want: []int{2}, evicted: 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New[int, string](tt.cap)
			for n, s := range tt.steps {
				switch s.op {
				case "add":
					k, v, ev := c.Add(s.key, "v"+string(rune('0'+s.key)))
					if got := -1; ev {
						got = k
						if v != "v"+string(rune('0'+k)) {
							t.Fatalf("step %d: evicted %d with value %q", n, k, v)
						}
						if got != s.evicted {
							t.Fatalf("step %d: add %d evicted %d, want %d", n, s.key, got, s.evicted)
						}
					} else if s.evicted != -1 {
						t.Fatalf("step %d: add %d evicted nothing, want %d", n, s.key, s.evicted)
					}
				case "get":
					if _, ok := c.Get(s.key); ok != s.found {
						t.Fatalf("step %d: get %d found %v", n, s.key, ok)
					}
				case "peek":
					if _, ok := c.Peek(s.key); ok != s.found {
						t.Fatalf("step %d: peek %d found %v", n, s.key, ok)
					}
				case "remove":
					if ok := c.Remove(s.key); ok != s.found {
						t.Fatalf("step %d: remove %d = %v", n, s.key, ok)
					}
				case "clear":
					c.Clear()
				}
				if got := c.Keys(); !slices.Equal(got, s.want) {
					t.Fatalf("step %d (%s %d): keys %v, want %v", n, s.op, s.key, got, s.want)
				}
				if c.Len() != len(s.want) {
					t.Fatalf("step %d: Len %d, want %d", n, c.Len(), len(s.want))
				}
			}
		})
	}
}

// TestCacheMatchesAModel drives the cache and a slice model with the same random operations.
func TestCacheMatchesAModel(t *testing.T) {
	for _, capacity := range []int{1, 3, 16} {
		r := rand.New(rand.NewPCG(uint64(capacity), 7))
		c := New[int, int](capacity)
		var model []int // keys, most recent first; values are key*10
		for n := 0; n < 20000; n++ {
			k := r.IntN(capacity * 3)
			switch r.IntN(4) {
			case 0, 1:
				ek, ev, evicted := c.Add(k, k*10)
				at := slices.Index(model, k)
				wantEvict := -1
				if at >= 0 {
					model = slices.Delete(model, at, at+1)
				} else if len(model) == capacity {
					wantEvict, model = model[len(model)-1], model[:len(model)-1]
				}
				model = slices.Insert(model, 0, k)
				if (wantEvict >= 0) != evicted || (evicted && (ek != wantEvict || ev != wantEvict*10)) {
					t.Fatalf("cap %d op %d: add %d evicted (%d, %d, %v), want %d", capacity, n, k, ek, ev, evicted, wantEvict)
				}
			case 2:
				v, ok := c.Get(k)
				at := slices.Index(model, k)
				if ok != (at >= 0) || (ok && v != k*10) {
					t.Fatalf("cap %d op %d: get %d = %d, %v", capacity, n, k, v, ok)
				}
				if at >= 0 {
					model = slices.Insert(slices.Delete(model, at, at+1), 0, k)
				}
			case 3:
				ok := c.Remove(k)
				at := slices.Index(model, k)
				if ok != (at >= 0) {
					t.Fatalf("cap %d op %d: remove %d = %v", capacity, n, k, ok)
				}
				if at >= 0 {
					model = slices.Delete(model, at, at+1)
				}
			}
			if got := c.Keys(); !slices.Equal(got, model) {
				t.Fatalf("cap %d op %d: keys %v, model %v", capacity, n, got, model)
			}
			if ok, okModel := c.tail != none, len(model) > 0; ok != okModel {
				t.Fatalf("cap %d op %d: tail %d with %d keys", capacity, n, c.tail, len(model))
			}
			if k, _, ok := c.Oldest(); ok != (len(model) > 0) || (ok && k != model[len(model)-1]) {
				t.Fatalf("cap %d op %d: Oldest %d %v, model %v", capacity, n, k, ok, model)
			}
		}
		if len(c.entries) > capacity {
			t.Errorf("cap %d: %d slots allocated", capacity, len(c.entries))
		}
	}
}

func TestCacheHitDoesNotAllocate(t *testing.T) {
	c := New[string, int](4)
	for _, k := range []string{"a", "b", "c", "d"} {
		c.Add(k, len(k))
	}
	allocs := testing.AllocsPerRun(1000, func() {
		c.Get("a")
		c.Get("c")
		c.Add("b", 2)
	})
	if allocs != 0 {
		t.Errorf("a hit allocates %v times", allocs)
	}
}
