package token

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/netguard"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// Issuer is a trusted token issuer. Its keys are, in order of precedence,
// the inline JWK Set JWKS, the set at JWKSURI, or the set at the jwks_uri
// of its OpenID Connect discovery document (Discovery).
type Issuer struct {
	ID        string
	Issuer    string
	Audiences []string
	JWKS      []byte
	JWKSURI   string
	Discovery bool
}

// FromBundle converts a bundle's issuers (data.gatehouse.config.issuers).
func FromBundle(issuers []policies.IssuerData) []Issuer {
	out := make([]Issuer, len(issuers))
	for i, d := range issuers {
		out[i] = Issuer{ID: d.ID, Issuer: d.Issuer, Audiences: d.Audiences, JWKSURI: d.JWKSURI, Discovery: d.Discovery}
		if d.JWKS != "" {
			out[i].JWKS = []byte(d.JWKS)
		}
	}
	return out
}

// Options configure a Verifier. Zero values mean the defaults.
type Options struct {
	// HTTPClient fetches JWK Sets and discovery documents. The default
	// dials public addresses only (see AllowPrivateNetworks), uses no
	// proxy and follows up to 5 redirects to http(s) URLs. A client given
	// here is used as it is: its dialer is not guarded.
	HTTPClient *http.Client
	// AllowPrivateNetworks lets the default client fetch from loopback,
	// private, link-local and unspecified addresses (refused by default).
	AllowPrivateNetworks bool
	// RefreshInterval is how often remote key sets are refreshed in the
	// background (default 10m); a failed fetch is retried after 2s,
	// doubling at each failure, up to RefreshInterval.
	RefreshInterval time.Duration
	// MinRefetchInterval rate-limits the refetch of a remote set when a
	// token names a kid it lacks (default 30s).
	MinRefetchInterval time.Duration
	// FetchTimeout bounds one fetch, discovery included (default 5s).
	FetchTimeout time.Duration
	// MaxJWKSBytes caps the size of a JWK Set or discovery document
	// (default 1 MiB).
	MaxJWKSBytes int64
	// Now is the clock for token times and the refetch rate limit
	// (default time.Now).
	Now func() time.Time
	// Logger receives fetch failures and refreshes (default: discarded).
	Logger *slog.Logger
	// Registerer receives the fetch and cache metrics (default: not
	// registered). Verifiers sharing a registerer share the metrics.
	Registerer prometheus.Registerer

	// CacheEntries bounds the number of outcomes the verified-token cache
	// holds (default 10,000); negative disables the cache.
	CacheEntries int
	// CacheBytes bounds the cache's estimated memory (default 32 MiB;
	// negative disables the cache); see CacheEntryOverhead for the
	// estimate. With tokens of about 1 KiB and 60 JSON values (11 KiB an
	// entry) the default holds about 3,000 tokens.
	CacheBytes int64
	// CacheMaxTokenBytes: longer tokens are verified every time, never
	// cached (default 16 KiB; negative: no token is cached).
	CacheMaxTokenBytes int
	// FailureTTL is how long a failed signature check is cached (default
	// 2s; negative: failures are not cached).
	FailureTTL time.Duration
}

// Defaults of Options.
const (
	DefaultRefreshInterval    = 10 * time.Minute
	DefaultMinRefetchInterval = 30 * time.Second
	DefaultFetchTimeout       = 5 * time.Second
	DefaultMaxJWKSBytes       = 1 << 20
	DefaultCacheEntries       = 10_000
	DefaultCacheBytes         = 32 << 20
	DefaultCacheMaxTokenBytes = 16 << 10
	DefaultFailureTTL         = 2 * time.Second
)

// maxRedirects is how many redirects the default client follows.
const maxRedirects = 5

// Verifier validates tokens of a set of issuers. It is safe for concurrent
// use; Close stops its background refresh.
type Verifier struct {
	opts    Options
	now     func() time.Time
	log     *slog.Logger
	client  *http.Client
	metrics *metrics
	issuers map[string][]*issuer // by iss
	cache   *cache               // nil when disabled
	// revocations are those of SetRevocations (nil: none).
	revocations atomic.Pointer[policies.RevocationsData]
	// remoteIDs are the ids of the issuers with remote keys (their
	// metrics series are counted in metrics.issuers).
	remoteIDs []string

	onSignature func() // called before each signature check (tests)

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup
}

// issuer is a configured issuer with its keys.
type issuer struct {
	Issuer
	audiences map[string]struct{}
	inline    *keySet // inline JWKS (possibly empty)
	inlineErr error   // why the inline JWKS is unusable (nil when it is)
	remote    *remoteKeys
}

// New returns a Verifier for issuers and starts fetching their remote key
// sets in the background.
func New(issuers []Issuer, opts Options) (*Verifier, error) {
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = DefaultRefreshInterval
	}
	if opts.MinRefetchInterval <= 0 {
		opts.MinRefetchInterval = DefaultMinRefetchInterval
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = DefaultFetchTimeout
	}
	if opts.MaxJWKSBytes <= 0 {
		opts.MaxJWKSBytes = DefaultMaxJWKSBytes
	}
	if opts.CacheEntries == 0 {
		opts.CacheEntries = DefaultCacheEntries
	}
	if opts.CacheBytes == 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	if opts.CacheMaxTokenBytes == 0 {
		opts.CacheMaxTokenBytes = DefaultCacheMaxTokenBytes
	}
	if opts.FailureTTL == 0 {
		opts.FailureTTL = DefaultFailureTTL
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	v := &Verifier{opts: opts, now: opts.Now, log: opts.Logger, metrics: m, issuers: map[string][]*issuer{},
		cache: newCache(opts, m)}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	v.client = newClient(opts)
	v.ctx, v.cancel = context.WithCancel(context.Background())

	var remotes []*remoteKeys
	for _, spec := range issuers {
		is := &issuer{Issuer: spec, audiences: map[string]struct{}{}}
		for _, a := range spec.Audiences {
			is.audiences[a] = struct{}{}
		}
		switch {
		case len(spec.JWKS) > 0:
			ks, err := parseKeySet(spec.JWKS)
			if err != nil {
				v.log.Warn("token issuer: inline JWK Set unusable; its tokens are invalid", "issuer", spec.ID, "error", err)
				ks, is.inlineErr = &keySet{}, err
			}
			is.inline = ks
		case spec.JWKSURI != "" || spec.Discovery:
			is.remote = &remoteKeys{v: v, is: &is.Issuer, uri: spec.JWKSURI}
			remotes = append(remotes, is.remote)
		default:
			v.log.Warn("token issuer has no keys; its tokens are invalid", "issuer", spec.ID)
			is.inline = &keySet{}
		}
		v.issuers[spec.Issuer] = append(v.issuers[spec.Issuer], is)
	}
	for _, r := range remotes {
		v.remoteIDs = append(v.remoteIDs, r.is.ID)
	}
	m.issuers.acquire(v.remoteIDs)
	for _, r := range remotes {
		r.mu.Lock()
		first := r.start()
		r.mu.Unlock()
		v.wg.Add(1)
		go r.refreshLoop(first)
	}
	return v, nil
}

// Close stops the background refresh and waits for running fetches.
func (v *Verifier) Close() {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return
	}
	v.closed = true
	v.mu.Unlock()
	v.cancel()
	v.wg.Wait()
	v.metrics.issuers.release(v.remoteIDs)
	if v.opts.HTTPClient == nil {
		v.client.CloseIdleConnections()
	}
}

// goFetch runs f on a goroutine Close waits for; false once closed.
func (v *Verifier) goFetch(f func()) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return false
	}
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		f()
	}()
	return true
}

func (is *issuer) accepts(auds []any) bool {
	for _, a := range auds {
		if _, ok := is.audiences[a.(string)]; ok {
			return true
		}
	}
	return false
}

// keySet returns the issuer's keys for a token. A remote set is refetched
// (rate-limited) when it lacks the token's kid or is not there yet
// (refetched is then true, even when the rate limit held the fetch back);
// cached keys are returned without waiting.
func (is *issuer) keySet(ctx context.Context, kid string, hasKid bool) (ks *keySet, refetched bool, err error) {
	if is.remote == nil {
		return is.inline, false, nil
	}
	ks = is.remote.keys.Load()
	if ks == nil || hasKid && !ks.hasKid(kid) {
		ks, err = is.remote.refetch(ctx)
		return ks, true, err
	}
	return ks, false, nil
}

// remoteKeys is an issuer's remote JWK Set.
type remoteKeys struct {
	v    *Verifier
	is   *Issuer
	keys atomic.Pointer[keySet] // nil until the first successful fetch

	mu           sync.Mutex
	inflight     chan struct{} // closed when the running fetch ends; nil when none runs
	lastOnDemand time.Time     // start of the last refetch for a token
	lastErr      error         // of the last fetch
	failingSince time.Time     // of the first fetch of the current run of failures (zero when the last succeeded)

	// uri is the JWK Set URL: configured, or discovered ("" until then).
	// Only the running fetch reads and writes it.
	uri string
}

// refreshLoop waits for the first fetch (started by New), then fetches
// every RefreshInterval until Close. After a failed fetch it tries again
// sooner: failedFetchRetry, doubling at each failure, up to
// RefreshInterval (an issuer that was down at start is not left without
// keys for the whole interval).
func (r *remoteKeys) refreshLoop(done chan struct{}) {
	defer r.v.wg.Done()
	var retry time.Duration
	for {
		select {
		case <-done:
		case <-r.v.ctx.Done():
			return
		}
		wait := r.v.opts.RefreshInterval
		r.mu.Lock()
		failed := r.lastErr != nil
		r.mu.Unlock()
		switch {
		case !failed:
			retry = 0
		case retry == 0:
			retry = failedFetchRetry
		default:
			retry = min(retry*2, r.v.opts.RefreshInterval) // never past the interval (nor overflowing)
		}
		if failed && retry < wait {
			wait = retry
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-r.v.ctx.Done():
			t.Stop()
			return
		}
		r.mu.Lock()
		done = r.start()
		r.mu.Unlock()
	}
}

// failedFetchRetry is the first wait before a failed background fetch is
// tried again.
const failedFetchRetry = 2 * time.Second

// start starts a fetch unless one runs and returns the channel closed when
// it ends. r.mu must be held.
func (r *remoteKeys) start() chan struct{} {
	if r.inflight != nil {
		return r.inflight
	}
	done := make(chan struct{})
	if !r.v.goFetch(func() { r.fetch(done) }) {
		close(done)
		return done
	}
	r.inflight = done
	return done
}

// refetch fetches the set again for a token whose kid it lacks: it joins a
// running fetch, else starts one unless one was started for a token less
// than MinRefetchInterval ago. It returns the keys then current.
func (r *remoteKeys) refetch(ctx context.Context) (*keySet, error) {
	r.mu.Lock()
	done := r.inflight
	if done == nil {
		now := r.v.now()
		if !r.lastOnDemand.IsZero() && now.Sub(r.lastOnDemand) < r.v.opts.MinRefetchInterval {
			err := r.lastErr
			r.mu.Unlock()
			return r.current(err)
		}
		r.lastOnDemand = now
		r.v.metrics.refetches.WithLabelValues(r.is.ID).Inc()
		done = r.start()
	}
	r.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
	}
	r.mu.Lock()
	err := r.lastErr
	r.mu.Unlock()
	return r.current(err)
}

// current returns the cached keys, or an error if there are none.
func (r *remoteKeys) current(lastErr error) (*keySet, error) {
	if ks := r.keys.Load(); ks != nil {
		return ks, nil
	}
	if lastErr != nil {
		return nil, fmt.Errorf("no keys for issuer %s: %w", r.is.ID, lastErr)
	}
	return nil, fmt.Errorf("no keys for issuer %s yet", r.is.ID)
}

// fetch loads the set once and keeps it if it is usable; a failure keeps
// the last good keys.
func (r *remoteKeys) fetch(done chan struct{}) {
	ctx, cancel := context.WithTimeout(r.v.ctx, r.v.opts.FetchTimeout)
	ks, err := r.load(ctx)
	cancel()
	result := "success"
	if err != nil {
		result = "error"
		r.v.log.Warn("token issuer: fetching the JWK Set failed; keeping the last keys", "issuer", r.is.ID, "error", err)
	} else {
		// A document unchanged keeps its keySet: the cached tokens it
		// verified stay cached.
		if old := r.keys.Load(); old == nil || old.digest != ks.digest {
			r.keys.Store(ks)
		}
		r.v.log.Debug("token issuer: JWK Set fetched", "issuer", r.is.ID, "keys", len(ks.keys))
	}
	r.v.metrics.fetches.WithLabelValues(r.is.ID, result).Inc()
	r.mu.Lock()
	r.inflight, r.lastErr = nil, err
	switch {
	case err == nil:
		r.failingSince = time.Time{}
	case r.failingSince.IsZero():
		r.failingSince = r.v.now().UTC()
	}
	r.mu.Unlock()
	close(done)
}

// KeyProblem is a token issuer whose keys cannot be had: its remote JWK
// Set's last fetch failed, or its inline set is unusable.
type KeyProblem struct {
	IssuerID string
	// Error says what failed (no secret is in it: URLs and HTTP statuses).
	Error string
	// Since is when the failures began (zero for an inline set).
	Since time.Time
	// HasKeys says tokens are still verified with keys fetched earlier.
	HasKeys bool
}

// KeyProblems lists the issuers whose keys cannot be had now, by issuer
// id; none when every set was loaded. Gateways report them in their
// status, so a failing key fetch shows on the control plane.
func (v *Verifier) KeyProblems() []KeyProblem {
	var out []KeyProblem
	for _, list := range v.issuers {
		for _, is := range list {
			switch {
			case is.inlineErr != nil:
				out = append(out, KeyProblem{IssuerID: is.ID, Error: "inline JWK Set unusable: " + is.inlineErr.Error()})
			case is.remote != nil:
				r := is.remote
				r.mu.Lock()
				err, since := r.lastErr, r.failingSince
				r.mu.Unlock()
				if err != nil {
					out = append(out, KeyProblem{IssuerID: is.ID, Error: err.Error(), Since: since, HasKeys: r.keys.Load() != nil})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IssuerID < out[j].IssuerID })
	return out
}

// load discovers the JWK Set URL if needed and fetches the set.
func (r *remoteKeys) load(ctx context.Context) (*keySet, error) {
	if r.uri == "" {
		uri, err := r.discover(ctx)
		if err != nil {
			return nil, err
		}
		r.uri = uri
	}
	ks, err := r.get(ctx, r.uri)
	if err != nil && r.is.JWKSURI == "" {
		r.uri = "" // discover again: the document may have moved the set
	}
	return ks, err
}

// discover reads jwks_uri from the issuer's OpenID Connect discovery
// document (go-oidc checks that the document names the same issuer).
func (r *remoteKeys) discover(ctx context.Context) (string, error) {
	if err := checkURL(r.is.Issuer); err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, r.v.client), r.is.Issuer)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	var doc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&doc); err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	if doc.JWKSURI == "" {
		return "", errors.New("discovery: the document has no jwks_uri")
	}
	return doc.JWKSURI, nil
}

// get fetches and parses a JWK Set; a set without a usable key is an error.
func (r *remoteKeys) get(ctx context.Context, uri string) (*keySet, error) {
	if err := checkURL(uri); err != nil {
		return nil, fmt.Errorf("jwks_uri: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks_uri: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	res, err := r.v.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", uri, res.StatusCode)
	}
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", uri, err)
	}
	ks, err := parseKeySet(body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", uri, err)
	}
	if ks.usable() == 0 {
		return nil, fmt.Errorf("GET %s: no usable key in the set", uri)
	}
	return ks, nil
}

// checkURL accepts absolute http and https URLs with a host.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return err
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q is not an http(s) URL", raw)
	case u.Host == "":
		return fmt.Errorf("%q has no host", raw)
	}
	return nil
}

// newClient returns the client for fetches: Options.HTTPClient or the
// guarded default, with bodies capped at MaxJWKSBytes.
func newClient(opts Options) *http.Client {
	var c http.Client
	if opts.HTTPClient != nil {
		c = *opts.HTTPClient
	} else {
		c.Transport = &http.Transport{
			Proxy:                  nil,
			DialContext:            netguard.Dialer(opts.FetchTimeout, opts.AllowPrivateNetworks).DialContext,
			ForceAttemptHTTP2:      true,
			TLSHandshakeTimeout:    opts.FetchTimeout,
			ResponseHeaderTimeout:  opts.FetchTimeout,
			MaxResponseHeaderBytes: 64 << 10,
			IdleConnTimeout:        90 * time.Second,
		}
		c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return fmt.Errorf("stopped after %d redirects", maxRedirects)
			}
			return checkURL(req.URL.String())
		}
	}
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = &limitedTransport{base: base, max: opts.MaxJWKSBytes}
	return &c
}

// limitedTransport fails responses whose body exceeds max bytes.
type limitedTransport struct {
	base http.RoundTripper
	max  int64
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if res.ContentLength > t.max {
		res.Body.Close()
		return nil, fmt.Errorf("the response from %s is larger than %d bytes", req.URL.Redacted(), t.max)
	}
	res.Body = &limitedBody{ReadCloser: res.Body, left: t.max, max: t.max}
	return res, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach base.
func (t *limitedTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

type limitedBody struct {
	io.ReadCloser
	left, max int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, b.tooLarge()
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, b.tooLarge()
	}
	return n, err
}

func (b *limitedBody) tooLarge() error {
	return fmt.Errorf("the response is larger than %d bytes", b.max)
}

// metrics are the key fetch and cache counters.
type metrics struct {
	// issuers holds the series by issuer; fetches and refetches are its.
	issuers   *issuerSeries
	fetches   *prometheus.CounterVec
	refetches *prometheus.CounterVec

	cacheHits      *prometheus.CounterVec
	cacheMisses    prometheus.Counter
	cacheEvictions prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		issuers: &issuerSeries{
			fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "gatehouse_token_jwks_fetches_total",
				Help: "Fetches of token issuers' remote JWK Sets (discovery included) by issuer and result (success, error); an issuer's series go when no verifier has it any more.",
			}, []string{"issuer", "result"}),
			refetches: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "gatehouse_token_jwks_unknown_kid_refetches_total",
				Help: "Refetches of a remote JWK Set started because a token named a kid the cached set lacks, by issuer.",
			}, []string{"issuer"}),
			refs: map[string]int{},
		},
		cacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_token_cache_hits_total",
			Help: "Token verifications answered from the verified-token cache, by result (valid, invalid).",
		}, []string{"result"}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_token_cache_misses_total",
			Help: "Token verifications the verified-token cache could not answer (the token was verified).",
		}),
		cacheEvictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_token_cache_evictions_total",
			Help: "Entries of the verified-token cache evicted to stay within its entry and byte bounds.",
		}),
	}
	var err error
	if reg != nil {
		// Verifiers on one registry share one issuerSeries, so an
		// issuer's series stay while any of them has it.
		if m.issuers, err = register(reg, m.issuers); err != nil {
			return nil, err
		}
	}
	m.fetches, m.refetches = m.issuers.fetches, m.issuers.refetches
	if reg == nil {
		return m, nil
	}
	if m.cacheHits, err = register(reg, m.cacheHits); err != nil {
		return nil, err
	}
	if m.cacheMisses, err = register(reg, m.cacheMisses); err != nil {
		return nil, err
	}
	if m.cacheEvictions, err = register(reg, m.cacheEvictions); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name (verifiers of successive bundle revisions share the metrics).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	if err != nil {
		var zero C
		return zero, fmt.Errorf("register token metrics: %w", err)
	}
	return c, nil
}

// issuerSeries are the metrics by issuer, with how many open verifiers
// have each issuer: the series of an issuer no verifier has any more (it
// was deleted, or its gateway was) are deleted. It is one collector, so
// verifiers registering on one registry share it.
type issuerSeries struct {
	fetches, refetches *prometheus.CounterVec

	mu   sync.Mutex
	refs map[string]int
}

func (s *issuerSeries) Describe(ch chan<- *prometheus.Desc) {
	s.fetches.Describe(ch)
	s.refetches.Describe(ch)
}

func (s *issuerSeries) Collect(ch chan<- prometheus.Metric) {
	s.fetches.Collect(ch)
	s.refetches.Collect(ch)
}

// acquire counts a verifier having the issuers ids.
func (s *issuerSeries) acquire(ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		s.refs[id]++
	}
}

// release undoes acquire and deletes the series of the issuers no
// verifier has any more.
func (s *issuerSeries) release(ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if s.refs[id]--; s.refs[id] > 0 {
			continue
		}
		delete(s.refs, id)
		s.fetches.DeletePartialMatch(prometheus.Labels{"issuer": id})
		s.refetches.DeleteLabelValues(id)
	}
}
