// Package lru is tenantproxy's one least-recently-used cache: a generic map with a bounded number of
// entries that evicts the entry used longest ago.
//
// Entries live in one slice and are linked by index, so a hit (Get) takes one map lookup and relinks one
// entry without allocating, and a full cache reuses the evicted entry's slot. A Cache is not safe for
// concurrent use: the relay uses it from its loop thread, and callers shared between goroutines hold
// their own lock (or shard, as the statement guard's cache does).
package lru

// none marks the end of a list.
const none = -1

type entry[K comparable, V any] struct {
	key        K
	value      V
	prev, next int32 // LRU list; next links the free list for unused slots
}

// Cache maps keys to values and keeps at most Cap entries. The zero value is not usable; call New.
type Cache[K comparable, V any] struct {
	index      map[K]int32
	entries    []entry[K, V]
	capacity   int
	head, tail int32 // most and least recently used; none when empty
	free       int32 // first unused slot below len(entries); none when there is none
}

// New returns an empty cache of at most capacity entries (at least 1).
func New[K comparable, V any](capacity int) *Cache[K, V] {
	capacity = max(capacity, 1)
	return &Cache[K, V]{
		index:    make(map[K]int32, min(capacity, 1<<16)),
		capacity: capacity,
		head:     none, tail: none, free: none,
	}
}

// Len returns the number of entries.
func (c *Cache[K, V]) Len() int { return len(c.index) }

// Cap returns the most entries the cache keeps.
func (c *Cache[K, V]) Cap() int { return c.capacity }

// Get returns the value of key and marks it most recently used.
func (c *Cache[K, V]) Get(key K) (V, bool) {
	i, ok := c.index[key]
	if !ok {
		var zero V
		return zero, false
	}
	c.moveToFront(i)
	return c.entries[i].value, true
}

// Peek returns the value of key without marking it used.
func (c *Cache[K, V]) Peek(key K) (V, bool) {
	i, ok := c.index[key]
	if !ok {
		var zero V
		return zero, false
	}
	return c.entries[i].value, true
}

// Contains reports whether key is cached, without marking it used.
func (c *Cache[K, V]) Contains(key K) bool {
	_, ok := c.index[key]
	return ok
}

// Add stores value under key and marks it most recently used. When the key is new and the cache is full,
// the least recently used entry is evicted and returned, so that the caller can release what it holds
// (the relay closes an evicted prepared statement on the server).
func (c *Cache[K, V]) Add(key K, value V) (evictedKey K, evictedValue V, evicted bool) {
	if i, ok := c.index[key]; ok {
		c.entries[i].value = value
		c.moveToFront(i)
		return evictedKey, evictedValue, false
	}
	var i int32
	switch {
	case len(c.index) >= c.capacity:
		i = c.tail
		e := &c.entries[i]
		evictedKey, evictedValue, evicted = e.key, e.value, true
		c.unlink(i)
		delete(c.index, e.key)
	case c.free != none:
		i = c.free
		c.free = c.entries[i].next
	default:
		c.entries = append(c.entries, entry[K, V]{})
		i = int32(len(c.entries) - 1)
	}
	c.entries[i].key, c.entries[i].value = key, value
	c.index[key] = i
	c.pushFront(i)
	return evictedKey, evictedValue, evicted
}

// Remove deletes key; it reports whether key was cached.
func (c *Cache[K, V]) Remove(key K) bool {
	i, ok := c.index[key]
	if !ok {
		return false
	}
	c.unlink(i)
	delete(c.index, key)
	c.entries[i] = entry[K, V]{prev: none, next: c.free} // drop references for the garbage collector
	c.free = i
	return true
}

// Oldest returns the least recently used entry without marking it used.
func (c *Cache[K, V]) Oldest() (key K, value V, ok bool) {
	if c.tail == none {
		return key, value, false
	}
	e := &c.entries[c.tail]
	return e.key, e.value, true
}

// Clear removes every entry.
func (c *Cache[K, V]) Clear() {
	clear(c.index)
	c.entries = c.entries[:0]
	c.head, c.tail, c.free = none, none, none
}

// Keys returns the keys from most to least recently used.
func (c *Cache[K, V]) Keys() []K {
	out := make([]K, 0, len(c.index))
	for i := c.head; i != none; i = c.entries[i].next {
		out = append(out, c.entries[i].key)
	}
	return out
}

func (c *Cache[K, V]) moveToFront(i int32) {
	if c.head == i {
		return
	}
	c.unlink(i)
	c.pushFront(i)
}

func (c *Cache[K, V]) unlink(i int32) {
	e := &c.entries[i]
	if e.prev != none {
		c.entries[e.prev].next = e.next
	} else {
		c.head = e.next
	}
	if e.next != none {
		c.entries[e.next].prev = e.prev
	} else {
		c.tail = e.prev
	}
	e.prev, e.next = none, none
}

func (c *Cache[K, V]) pushFront(i int32) {
	e := &c.entries[i]
	e.prev, e.next = none, c.head
	if c.head != none {
		c.entries[c.head].prev = i
	}
	c.head = i
	if c.tail == none {
		c.tail = i
	}
}
