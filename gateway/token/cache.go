package token

import (
	"encoding/json"
	"math"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// The verified-token cache keeps the outcome of a token's signature check
// so that a token is verified once rather than on every request. Entries
// are keyed by the SHA-256 of the raw token (the token itself is not kept)
// and evicted least recently used first, within Options.CacheEntries and
// Options.CacheBytes.
//
// A valid token's entry is served until the earliest of: floor(exp) +
// Leeway (nbf and iat, met when it was verified, stay met as the clock
// moves on; a clock that moves back before the verification misses), a
// change of a remote key set it was verified with (a fetched document that
// differs, even if it holds the same keys; a refresh that brings the same
// document keeps the set), and Revoke. A failed signature check is served
// for FailureTTL at most, with the same bounds; only failures of the
// signature check itself are cached — never a failure that asked for an
// unknown kid's refetch or met an issuer without keys, so that a rotated
// key is picked up as soon as it is fetched — and never the checks before
// it (format, alg, iss, aud, times), which cost little.
//
// An outcome is cached only when verifying again would give the same
// outcome: with several issuers of the same iss, a token verified by one
// after another asked for a refetch is not cached.

// Cost estimate of a cache entry (Options.CacheBytes), in bytes: a valid
// token's entry counts CacheEntryOverhead + the token's length +
// CacheBytesPerValue × the JSON values of its header and claims (every
// object, array, string, number, boolean and null, and every object member
// name); a failure's counts CacheEntryOverhead + the length of its error's
// text. A valid entry holds the decoded header and claims, the scopes and,
// once asked for, the policy value of its Info (Info.ASTValue). The
// estimate is meant to be high: measured with tokens of 0.4 to 9 KiB (long
// strings, arrays of strings or numbers, objects), it is 1.1 to 1.8 times
// the heap an entry holds; a token of 1 KiB with 60 JSON values counts
// about 11 KiB (8.9 KiB measured).
const (
	CacheEntryOverhead = 512
	CacheBytesPerValue = 128
)

// jsonValues counts the JSON values of x, object member names included.
func jsonValues(x any) int64 {
	n := int64(1)
	switch x := x.(type) {
	case map[string]any:
		for _, v := range x {
			n += 1 + jsonValues(v)
		}
	case []any:
		for _, v := range x {
			n += jsonValues(v)
		}
	}
	return n
}

// Sharding: each shard holds at least minShardEntries entries and
// minShardBytes bytes of the bounds; smaller bounds mean fewer shards
// (down to one, where the bounds are exact).
const (
	maxShards       = 16
	minShardEntries = 128
	minShardBytes   = 1 << 20
)

// cache is the verified-token cache of a Verifier.
type cache struct {
	shards     []cacheShard
	maxToken   int
	failureTTL int64 // nanoseconds; 0: failures are not cached
	gen        atomic.Uint64

	hits, misses, evictions atomic.Uint64
	validHits, invalidHits  prometheus.Counter
	missCount, evictCount   prometheus.Counter
}

// cacheShard is an LRU list of entries under a mutex.
type cacheShard struct {
	mu         sync.Mutex
	entries    map[[32]byte]*entry
	lru        entry // sentinel: lru.next is the most recently used entry
	bytes      int64
	maxEntries int
	maxBytes   int64
	_          [64]byte // keeps shards' mutexes on distinct cache lines
}

// entry is a cached outcome. All fields but prev and next are immutable
// once the entry is in a shard.
type entry struct {
	key  [32]byte
	tok  *Token // nil for a failure
	err  error
	deps []dep
	// The entry is live at now when verifiedAt <= now < until and, when
	// checkExp, exp is still in the future (compareNumericDate, for an exp
	// that numericDateNanos cannot give as nanoseconds).
	verifiedAt, until int64
	exp               json.Number
	checkExp          bool
	cost              int64

	prev, next *entry
}

// newCache returns the cache Options ask for, nil when it is disabled.
func newCache(opts Options, m *metrics) *cache {
	if opts.CacheEntries < 0 || opts.CacheBytes < 0 || opts.CacheMaxTokenBytes < 0 {
		return nil
	}
	c := &cache{maxToken: opts.CacheMaxTokenBytes,
		validHits: m.cacheHits.WithLabelValues("valid"), invalidHits: m.cacheHits.WithLabelValues("invalid"),
		missCount: m.cacheMisses, evictCount: m.cacheEvictions}
	if opts.FailureTTL > 0 {
		c.failureTTL = int64(opts.FailureTTL)
	}
	n := maxShards
	for n > 1 && (opts.CacheEntries/n < minShardEntries || opts.CacheBytes/int64(n) < minShardBytes) {
		n /= 2
	}
	c.shards = make([]cacheShard, n)
	for i := range c.shards {
		s := &c.shards[i]
		s.entries = map[[32]byte]*entry{}
		s.lru.next, s.lru.prev = &s.lru, &s.lru
		s.maxEntries, s.maxBytes = opts.CacheEntries/n, opts.CacheBytes/int64(n)
	}
	return c
}

func (c *cache) shard(key *[32]byte) *cacheShard {
	return &c.shards[int(key[0])%len(c.shards)]
}

// generation is the count of Revoke calls: an outcome computed while it
// changed is not cached.
func (c *cache) generation() uint64 { return c.gen.Load() }

func (c *cache) miss() {
	c.misses.Add(1)
	c.missCount.Inc()
}

// get returns the live entry of key at now (nil if there is none). A stale
// entry is dropped.
func (c *cache) get(key *[32]byte, now int64) *entry {
	s := c.shard(key)
	s.mu.Lock()
	e := s.entries[*key]
	if e != nil && !e.live(now) {
		s.remove(e)
		e = nil
	}
	if e != nil {
		s.unlink(e)
		s.pushFront(e)
	}
	s.mu.Unlock()
	switch {
	case e == nil:
		c.miss()
		return nil
	case e.tok != nil:
		c.validHits.Inc()
	default:
		c.invalidHits.Inc()
	}
	c.hits.Add(1)
	return e
}

// put caches a cacheable outcome of a token of tokenLen bytes verified at
// now, unless Revoke ran since generation gen.
func (c *cache) put(key *[32]byte, o *verification, tokenLen int, now int64, gen uint64) {
	e := &entry{key: *key, tok: o.tok, err: o.err, deps: o.deps, verifiedAt: now, until: math.MaxInt64}
	if o.err != nil {
		if c.failureTTL == 0 {
			return
		}
		e.until = now + c.failureTTL
		e.cost = CacheEntryOverhead + int64(len(o.err.Error()))
	} else {
		e.cost = CacheEntryOverhead + int64(tokenLen) + CacheBytesPerValue*(jsonValues(o.tok.Header)+jsonValues(o.tok.Claims))
	}
	if d, ok := numericDateNanos(o.exp, leewaySeconds); ok {
		e.until = min(e.until, d)
	} else {
		e.exp, e.checkExp = o.exp, true
	}
	s := c.shard(key)
	if e.cost > s.maxBytes || s.maxEntries == 0 {
		return
	}
	evicted := 0
	s.mu.Lock()
	if c.gen.Load() != gen {
		s.mu.Unlock()
		return
	}
	if old := s.entries[*key]; old != nil {
		s.remove(old)
	}
	s.entries[e.key] = e
	s.bytes += e.cost
	s.pushFront(e)
	for len(s.entries) > s.maxEntries || s.bytes > s.maxBytes {
		s.remove(s.lru.prev)
		evicted++
	}
	s.mu.Unlock()
	if evicted > 0 {
		c.evictions.Add(uint64(evicted))
		c.evictCount.Add(float64(evicted))
	}
}

// live reports whether the entry's outcome is still Verify's at now.
func (e *entry) live(now int64) bool {
	if now < e.verifiedAt || now >= e.until {
		return false
	}
	if e.checkExp {
		if c, ok := compareNumericDate(now, e.exp, leewaySeconds); !ok || c >= 0 {
			return false
		}
	}
	for _, d := range e.deps {
		if d.remote.keys.Load() != d.keys {
			return false
		}
	}
	return true
}

func (s *cacheShard) pushFront(e *entry) {
	e.prev, e.next = &s.lru, s.lru.next
	s.lru.next.prev = e
	s.lru.next = e
}

func (s *cacheShard) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

// remove drops an entry of the shard.
func (s *cacheShard) remove(e *entry) {
	s.unlink(e)
	delete(s.entries, e.key)
	s.bytes -= e.cost
}

// Revoke drops the cached valid tokens for which match returns true and
// returns how many it dropped; verifications running meanwhile cache
// nothing. It does not make tokens invalid: a dropped token is verified
// again on its next use, and deciding that a token is revoked is the
// caller's business (there is no revocation source in the verifier).
// match runs under the cache's locks: it must not call the Verifier.
func (v *Verifier) Revoke(match func(*Token) bool) int {
	c := v.cache
	if c == nil {
		return 0
	}
	c.gen.Add(1)
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for _, e := range s.entries {
			if e.tok != nil && match(e.tok) {
				s.remove(e)
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

// CacheStats describe a Verifier's verified-token cache.
type CacheStats struct {
	// Entries and Bytes are the entries held (stale ones included until
	// they are looked up or evicted) and their estimated size.
	Entries int
	Bytes   int64
	// Hits and Misses count lookups: answered from the cache, or verified
	// (tokens too long to cache included). Evictions count entries dropped
	// to stay within the bounds.
	Hits, Misses, Evictions uint64
	// Shards is how many independently locked parts the cache has.
	Shards int
}

// CacheStats returns the cache's current figures (zero when the cache is
// disabled).
func (v *Verifier) CacheStats() CacheStats {
	c := v.cache
	if c == nil {
		return CacheStats{}
	}
	st := CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Evictions: c.evictions.Load(), Shards: len(c.shards)}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		st.Entries += len(s.entries)
		st.Bytes += s.bytes
		s.mu.Unlock()
	}
	return st
}
