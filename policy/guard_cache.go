package policy

import (
	"strings"
	"sync"
)

// cacheShards is the number of independently locked parts of the verdict cache.
const cacheShards = 16

// verdictCache is a bounded LRU cache of classifications by statement text, split into shards that lock
// separately. A hit takes one map lookup and relinks one entry; it does not allocate.
type verdictCache struct {
	shards [cacheShards]cacheShard
	maxLen int
}

// cacheShard is one LRU list over a fixed array of entries, most recently used first.
type cacheShard struct {
	mu         sync.Mutex
	index      map[string]int32
	entries    []cacheEntry
	capacity   int
	head, tail int32 // -1 when the shard is empty
}

// cacheEntry is one cached classification, linked into its shard's LRU list by index.
type cacheEntry struct {
	key        string
	value      *Classification
	prev, next int32
}

// newVerdictCache returns a cache of about size entries that keeps texts of at most maxLen bytes.
func newVerdictCache(size, maxLen int) *verdictCache {
	c := &verdictCache{maxLen: maxLen}
	per := (size + cacheShards - 1) / cacheShards
	for i := range c.shards {
		sh := &c.shards[i]
		sh.capacity = per
		sh.index = make(map[string]int32, per)
		sh.entries = make([]cacheEntry, 0, per)
		sh.head, sh.tail = -1, -1
	}
	return c
}

// shardOf picks the shard of key from its length and a few of its bytes, which is cheaper than hashing
// the whole text twice.
func (c *verdictCache) shardOf(key string) *cacheShard {
	h := uint32(len(key)) * 0x9E3779B1
	if n := len(key); n > 0 {
		h ^= uint32(key[n-1])<<16 | uint32(key[n/2])<<8 | uint32(key[n/3])
		h *= 0x85EBCA6B
	}
	return &c.shards[(h>>16)%cacheShards]
}

// get returns the cached classification of key, or nil.
func (c *verdictCache) get(key string) *Classification {
	if len(key) > c.maxLen {
		return nil
	}
	sh := c.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, ok := sh.index[key]
	if !ok {
		return nil
	}
	sh.moveToFront(i)
	return sh.entries[i].value
}

// put caches value for key, evicting the least recently used entry of the shard when it is full. The key
// is copied, since callers may pass text that aliases a reused buffer.
func (c *verdictCache) put(key string, value *Classification) {
	if len(key) > c.maxLen {
		return
	}
	sh := c.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.index[key]; ok {
		return
	}
	key = strings.Clone(key)
	var i int32
	if len(sh.entries) < sh.capacity {
		sh.entries = append(sh.entries, cacheEntry{prev: -1, next: -1})
		i = int32(len(sh.entries) - 1)
	} else {
		i = sh.tail
		sh.unlink(i)
		delete(sh.index, sh.entries[i].key)
	}
	sh.entries[i].key, sh.entries[i].value = key, value
	sh.index[key] = i
	sh.pushFront(i)
}

// len returns the number of cached entries.
func (c *verdictCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.index)
		sh.mu.Unlock()
	}
	return n
}

func (sh *cacheShard) moveToFront(i int32) {
	if sh.head == i {
		return
	}
	sh.unlink(i)
	sh.pushFront(i)
}

func (sh *cacheShard) unlink(i int32) {
	e := &sh.entries[i]
	if e.prev >= 0 {
		sh.entries[e.prev].next = e.next
	} else {
		sh.head = e.next
	}
	if e.next >= 0 {
		sh.entries[e.next].prev = e.prev
	} else {
		sh.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (sh *cacheShard) pushFront(i int32) {
	e := &sh.entries[i]
	e.prev, e.next = -1, sh.head
	if sh.head >= 0 {
		sh.entries[sh.head].prev = i
	}
	sh.head = i
	if sh.tail < 0 {
		sh.tail = i
	}
}
