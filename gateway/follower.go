package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/gatehouse-dev/gatehouse/policies"
)

// FollowerOptions configures a Follower.
type FollowerOptions struct {
	// URL is the gateway's bundle service: <control plane>/api/system/{tid}/gateways/{gw}/opa.
	URL        string
	TenantID   string
	GatewayID  string
	Credential string
	// KeyID and PublicKeyPEM verify bundle signatures (required).
	KeyID        string
	PublicKeyPEM string
	// CacheDir keeps the last good bundle; empty disables the cache.
	CacheDir string
	// LongPoll is the Prefer: wait=N the follower asks for (default 30 s).
	LongPoll   time.Duration
	Client     *http.Client
	Activator  *Activator
	InstanceID string
	Version    string
	Logger     *slog.Logger
	// MaxBundleBytes caps a download (default 64 MiB).
	MaxBundleBytes int64
}

// Follower keeps a gateway's bundle current: it long-polls the bundle
// service with the ETag it has, verifies every bundle's signature with the
// tenant key before activating it, writes the last good bundle to disk and
// starts from that cache when the control plane is unreachable. It reports
// status to the control plane in OPA's format.
type Follower struct {
	opts FollowerOptions
	vc   *bundle.VerificationConfig

	mu          sync.Mutex
	etag        string
	revision    string
	activatedAt time.Time
	downloadAt  time.Time
	lastErr     string
}

// NewFollower validates the options.
func NewFollower(opts FollowerOptions) (*Follower, error) {
	switch {
	case opts.URL == "" || opts.TenantID == "" || opts.GatewayID == "":
		return nil, errors.New("follower: the control plane URL, tenant and gateway are required")
	case opts.Credential == "":
		return nil, errors.New("follower: a gateway credential is required")
	case opts.KeyID == "" || opts.PublicKeyPEM == "":
		return nil, errors.New("follower: the bundle signing key (id and public key) is required")
	case opts.Activator == nil:
		return nil, errors.New("follower: an activator is required")
	}
	if opts.LongPoll <= 0 {
		opts.LongPoll = 30 * time.Second
	}
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBundleBytes <= 0 {
		opts.MaxBundleBytes = 64 << 20
	}
	opts.URL = strings.TrimRight(opts.URL, "/")
	return &Follower{opts: opts, vc: policies.VerificationConfig(opts.KeyID, opts.PublicKeyPEM)}, nil
}

// Revision is the active bundle revision ("" before the first activation).
func (f *Follower) Revision() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.revision
}

func (f *Follower) cachePath() string {
	if f.opts.CacheDir == "" {
		return ""
	}
	return filepath.Join(f.opts.CacheDir, f.opts.TenantID, f.opts.GatewayID, "bundle.tar.gz")
}

// LoadCache activates the cached bundle, if there is one that verifies.
func (f *Follower) LoadCache(ctx context.Context) error {
	path := f.cachePath()
	if path == "" {
		return errors.New("no cache directory")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	etag, _ := os.ReadFile(path + ".etag")
	if err := f.activate(ctx, raw, strings.TrimSpace(string(etag)), "disk-cache"); err != nil {
		return fmt.Errorf("cached bundle %s: %w", path, err)
	}
	return nil
}

// Run activates the disk cache if the control plane has not delivered a
// bundle yet, then follows the bundle service until ctx ends.
func (f *Follower) Run(ctx context.Context) {
	if f.cachePath() != "" {
		if err := f.LoadCache(ctx); err == nil {
			f.opts.Logger.Info("activated the cached bundle", "revision", f.Revision(), "path", f.cachePath())
		} else if !errors.Is(err, os.ErrNotExist) {
			f.opts.Logger.Warn("cannot use the cached bundle", "error", err.Error())
		}
	}
	go f.reportLoop(ctx)
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		changed, err := f.poll(ctx)
		if ctx.Err() != nil {
			return
		}
		f.setError(err)
		if err == nil {
			backoff = 250 * time.Millisecond
			if changed {
				f.report(ctx)
			}
			continue
		}
		f.opts.Logger.Warn("bundle download failed; enforcing the last good bundle", "error", err.Error(), "revision", f.Revision(), "retry_in", backoff.String())
		f.report(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 15*time.Second)
	}
}

func (f *Follower) setError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.lastErr = err.Error()
	} else {
		f.lastErr = ""
	}
}

// poll makes one (long-polling) request and activates what it gets.
func (f *Follower) poll(ctx context.Context) (bool, error) {
	rctx, cancel := context.WithTimeout(ctx, f.opts.LongPoll+15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, f.opts.URL+"/bundle", nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+f.opts.Credential)
	f.mu.Lock()
	etag := f.etag
	f.mu.Unlock()
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	req.Header.Set("Prefer", fmt.Sprintf("modes=snapshot;wait=%d", int(f.opts.LongPoll/time.Second)))
	res, err := f.opts.Client.Do(req)
	if err != nil {
		return false, fmt.Errorf("download bundle: %w", err)
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusNotModified:
		return false, nil
	case http.StatusOK:
	default:
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return false, fmt.Errorf("download bundle: %s: %s", res.Status, bytes.TrimSpace(b))
	}
	raw, err := io.ReadAll(io.LimitReader(res.Body, f.opts.MaxBundleBytes+1))
	if err != nil {
		return false, fmt.Errorf("download bundle: %w", err)
	}
	if int64(len(raw)) > f.opts.MaxBundleBytes {
		return false, fmt.Errorf("download bundle: larger than %d bytes", f.opts.MaxBundleBytes)
	}
	f.mu.Lock()
	f.downloadAt = time.Now().UTC()
	f.mu.Unlock()
	newTag := res.Header.Get("ETag")
	if err := f.activate(ctx, raw, newTag, "control-plane"); err != nil {
		return false, err
	}
	if err := f.writeCache(raw, newTag); err != nil {
		f.opts.Logger.Warn("cannot write the bundle cache", "error", err.Error())
	}
	return true, nil
}

// activate verifies the signature, builds the engine and swaps it in.
func (f *Follower) activate(ctx context.Context, raw []byte, etag, source string) error {
	b, err := policies.ReadBundle(raw, f.vc)
	if err != nil {
		return fmt.Errorf("verify bundle: %w", err)
	}
	if t, g := b.Manifest.Metadata["tenant"], b.Manifest.Metadata["gateway"]; t != f.opts.TenantID || g != f.opts.GatewayID {
		return fmt.Errorf("verify bundle: it is for %v/%v, not %s/%s", t, g, f.opts.TenantID, f.opts.GatewayID)
	}
	src := &Source{TenantID: f.opts.TenantID, GatewayID: f.opts.GatewayID, Revision: b.Manifest.Revision,
		Modules: b.ParsedModules("gatehouse"), Data: b.Data}
	if _, err := f.opts.Activator.Activate(ctx, src, source); err != nil {
		return fmt.Errorf("activate bundle revision %s: %w", b.Manifest.Revision, err)
	}
	f.mu.Lock()
	f.etag, f.revision, f.activatedAt = etag, b.Manifest.Revision, time.Now().UTC()
	f.mu.Unlock()
	f.opts.Logger.Info("bundle activated", "revision", b.Manifest.Revision, "source", source)
	return nil
}

// writeCache stores the bundle atomically (temp file, fsync, rename).
func (f *Follower) writeCache(raw []byte, etag string) error {
	path := f.cachePath()
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	for _, w := range []struct {
		path string
		data []byte
	}{{path, raw}, {path + ".etag", []byte(etag + "\n")}} {
		tmp, err := os.CreateTemp(filepath.Dir(path), ".bundle-*")
		if err != nil {
			return err
		}
		_, werr := tmp.Write(w.data)
		serr := tmp.Sync()
		cerr := tmp.Close()
		if err := errors.Join(werr, serr, cerr); err != nil {
			os.Remove(tmp.Name())
			return err
		}
		if err := os.Rename(tmp.Name(), w.path); err != nil {
			os.Remove(tmp.Name())
			return err
		}
	}
	return nil
}

func (f *Follower) reportLoop(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.report(ctx)
		}
	}
}

// report posts an OPA-format status report (UpdateRequestV1).
func (f *Follower) report(ctx context.Context) {
	f.mu.Lock()
	st := map[string]any{"name": "gatehouse", "active_revision": f.revision, "last_request": time.Now().UTC()}
	if !f.activatedAt.IsZero() {
		st["last_successful_activation"] = f.activatedAt
	}
	if !f.downloadAt.IsZero() {
		st["last_successful_download"] = f.downloadAt
	}
	state := "OK"
	if f.revision == "" {
		state = "NOT_READY"
	}
	if f.lastErr != "" {
		st["code"], st["message"] = "bundle_error", f.lastErr
		state = "ERROR"
	}
	f.mu.Unlock()
	body, _ := json.Marshal(map[string]any{
		"labels":  map[string]string{"id": f.opts.InstanceID, "app": "gatehouse-authorizer", "version": f.opts.Version},
		"bundles": map[string]any{"gatehouse": st},
		"plugins": map[string]any{"bundle": map[string]string{"state": state}},
	})
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, f.opts.URL+"/status", bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Authorization", "Bearer "+f.opts.Credential)
	req.Header.Set("Content-Type", "application/json")
	res, err := f.opts.Client.Do(req)
	if err != nil {
		f.opts.Logger.Debug("status report failed", "error", err.Error())
		return
	}
	res.Body.Close()
}
