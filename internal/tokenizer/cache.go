package tokenizer

import (
	"hash/maphash"
	"strings"
	"sync"
)

const (
	cacheShards        = 64
	cacheShardCapacity = 1024 // words per shard: 64 Ki words, a few MB at most
	cacheMaxWordLen    = 128  // longer words are rare and not worth the memory
)

// wordCache remembers the BPE result of words that are not a single token. It is shared by
// all goroutines; sharding keeps them from queueing on one lock. A full shard is emptied and
// refilled, which bounds memory for a server that runs for days on varied text.
type wordCache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu    sync.RWMutex
	words map[string][]int32 // word -> token ids followed by their end offsets
	_     [40]byte           // keep shards on separate cache lines
}

func newWordCache() *wordCache {
	c := &wordCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].words = make(map[string][]int32)
	}
	return c
}

func (c *wordCache) shard(word string) *cacheShard {
	return &c.shards[maphash.String(c.seed, word)%cacheShards]
}

// get returns the cached ids and ends of word: n ids followed by n ends.
func (c *wordCache) get(word string) ([]int32, bool) {
	if len(word) > cacheMaxWordLen {
		return nil, false
	}
	s := c.shard(word)
	s.mu.RLock()
	v, ok := s.words[word]
	s.mu.RUnlock()
	return v, ok
}

// put stores a copy of ids and ends for word and returns it in get's layout.
func (c *wordCache) put(word string, ids, ends []int32) []int32 {
	v := make([]int32, 0, len(ids)+len(ends))
	v = append(append(v, ids...), ends...)
	if len(word) > cacheMaxWordLen {
		return v
	}
	s := c.shard(word)
	s.mu.Lock()
	if len(s.words) >= cacheShardCapacity {
		clear(s.words)
	}
	s.words[strings.Clone(word)] = v // word points into the caller's text: do not keep that alive
	s.mu.Unlock()
	return v
}
