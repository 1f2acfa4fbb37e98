package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/internal/secretbox"
	"github.com/gatehouse-dev/gatehouse/model"
	oauthkeys "github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
)

// gatehouse bundle build: a gateway's bundle compiled offline from a
// configuration export (GET /api/system/configuration), with the control
// plane's own code: the document is imported, with the admin API's
// validation, into a scratch embedded store, read back as the bundle
// manager reads a tenant, compiled with policies.Compile and written with
// policies.Build. Given the revision and the signing key the control plane
// used, the bytes are the ones its bundle service serves.

// maxExportSize caps the document read (the import's own limit is 10 MiB).
const maxExportSize = 10 << 20

// bundleBuildConfig are the flags of bundle build.
type bundleBuildConfig struct {
	ConfigFile    string
	Output        string
	Gateway       string
	Tenant        string
	SigningKey    string
	KeyID         string
	Revision      int64
	PublicURL     string
	AllowBuiltins []string
}

func newBundleCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Work with gateway bundles offline",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newBundleBuildCommand(stdout, stderr))
	return cmd
}

func newBundleBuildCommand(stdout, stderr io.Writer) *cobra.Command {
	var cfg bundleBuildConfig
	cmd := &cobra.Command{
		Use:   "build --config export.json -o bundle.tar.gz",
		Short: "Compile a gateway's OPA bundle from a configuration export, offline",
		Long: `Compile a gateway's OPA bundle from a configuration export (the document of
GET /api/system/configuration?tid=…), exactly as the control plane compiles it:
the document is validated as an import validates it, the gateway's bundle is
compiled by the same compiler and written by the same writer. Nothing is
contacted; a scratch store in a temporary directory is removed afterwards.

The bytes are the control plane's when it has the same configuration and you
pass what the control plane chose itself: --revision, the revision of its
bundle (status.bundle.revision of GET /api/admin/{tid}/gateways/{gw}), and
--signing-key, the tenant's signing key. Without --signing-key the bundle is
unsigned (a stock OPA loads it without --verification-key). Configuration the
export does not carry does not reach the bundle: authorization servers' keys
and token revocations (see docs/bundles.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBundleBuild(cmd.Context(), cfg, stdout, stderr)
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&cfg.ConfigFile, "config", "c", "", "configuration export (JSON; - for standard input)")
	fs.StringVarP(&cfg.Output, "output", "o", "", "where to write the bundle (gzip tar; - for standard output)")
	fs.StringVar(&cfg.Gateway, "gateway", "", "the gateway whose bundle to build (default: the document's only gateway)")
	fs.StringVar(&cfg.Tenant, "tenant", "", "the tenant id the bundle is built for (default: the document's tenant.id)")
	fs.StringVar(&cfg.SigningKey, "signing-key", "", "sign with this RSA private key (PEM, PKCS#1 or PKCS#8), as the control plane signs")
	fs.StringVar(&cfg.KeyID, "key-id", "", "key id of .signatures.json (default: the control plane's id of that key, <tenant>-<fingerprint>)")
	fs.Int64Var(&cfg.Revision, "revision", 1, "the manifest's revision (the control plane's: the store revision at which the content first appeared)")
	fs.StringVar(&cfg.PublicURL, "public-url", "", "the control plane's --public-url (only used for authorization servers whose keys the document imports)")
	fs.StringSliceVar(&cfg.AllowBuiltins, "policy-allow-builtins", nil, "the control plane's --policy-allow-builtins")
	return cmd
}

func runBundleBuild(ctx context.Context, cfg bundleBuildConfig, stdout, stderr io.Writer) error {
	switch {
	case cfg.ConfigFile == "":
		return errors.New("--config is required: the configuration export to build from")
	case cfg.Output == "":
		return errors.New("-o/--output is required: where to write the bundle")
	case cfg.Revision < 1:
		return fmt.Errorf("--revision must be at least 1, not %d", cfg.Revision)
	}
	doc, err := readExport(cfg.ConfigFile)
	if err != nil {
		return err
	}
	tid, gateways, err := exportTenant(doc, cfg.Tenant)
	if err != nil {
		return fmt.Errorf("%s: %w", cfg.ConfigFile, err)
	}
	gw, err := pickGateway(gateways, cfg.Gateway)
	if err != nil {
		return fmt.Errorf("%s: %w", cfg.ConfigFile, err)
	}
	var key *policies.SigningKey
	if cfg.SigningKey != "" {
		pemBytes, err := os.ReadFile(cfg.SigningKey)
		if err != nil {
			return fmt.Errorf("--signing-key: %w", err)
		}
		if key, err = policies.SigningKeyFromPEM(tid, cfg.KeyID, pemBytes); err != nil {
			return fmt.Errorf("--signing-key %s: %w", cfg.SigningKey, err)
		}
	} else if cfg.KeyID != "" {
		return errors.New("--key-id needs --signing-key")
	}
	allowed, err := policies.NormalizeAllowedBuiltins(cfg.AllowBuiltins)
	if err != nil {
		return fmt.Errorf("--policy-allow-builtins: %w", err)
	}
	compiled, err := compileExport(ctx, doc, tid, gw, offlineOptions{PublicURL: cfg.PublicURL, AllowBuiltins: allowed})
	if err != nil {
		return err
	}
	raw, err := policies.Build(compiled, cfg.Revision, key)
	if err != nil {
		return fmt.Errorf("write the bundle: %w", err)
	}
	if err := writeOutput(cfg.Output, raw, stdout); err != nil {
		return err
	}
	for _, pid := range slices.Sorted(maps.Keys(compiled.Skipped)) {
		fmt.Fprintf(stderr, "warning: policy %s is left out of the bundle (the APIs bound to it are denied): %s\n", pid, compiled.Skipped[pid])
	}
	signed := "unsigned"
	if key != nil {
		signed = "signed with key " + key.KeyID
	}
	where := cfg.Output
	if where == "-" {
		where = "standard output"
	}
	fmt.Fprintf(stderr, "bundle of gateway %s of tenant %s written to %s: revision %d, %d bytes, %d modules, %s, content hash %s\n",
		gw, tid, where, cfg.Revision, len(raw), len(compiled.Modules), signed, compiled.Hash)
	return nil
}

// readExport reads a configuration document (a file, or - for stdin).
func readExport(name string) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("read the configuration: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxExportSize+1))
	if err != nil {
		return nil, fmt.Errorf("read the configuration %s: %w", name, err)
	}
	if len(b) > maxExportSize {
		return nil, fmt.Errorf("the configuration %s exceeds %d bytes", name, maxExportSize)
	}
	if !json.Valid(b) {
		var v any
		err := json.Unmarshal(b, &v)
		return nil, fmt.Errorf("the configuration %s is not JSON: %w", name, err)
	}
	return b, nil
}

// exportTenant reads the tenant a document is built for (override, else
// its tenant.id) and the ids of its gateways.
func exportTenant(doc []byte, override string) (string, []string, error) {
	var head struct {
		Tenant *struct {
			ID string `json:"id"`
		} `json:"tenant"`
		Gateways []struct {
			ID string `json:"id"`
		} `json:"gateways"`
	}
	if err := json.Unmarshal(doc, &head); err != nil {
		return "", nil, fmt.Errorf("not a configuration document: %w", err)
	}
	tid := override
	if tid == "" && head.Tenant != nil {
		tid = head.Tenant.ID
	}
	switch {
	case tid == "":
		return "", nil, errors.New("the document names no tenant (tenant.id); pass --tenant")
	case !model.ValidTenantID(tid):
		return "", nil, fmt.Errorf("invalid tenant id %q (%s)", tid, model.TenantIDRule)
	case tid == model.SystemTenantID:
		return "", nil, fmt.Errorf("tenant %q is reserved; pass --tenant", tid)
	}
	var ids []string
	for _, g := range head.Gateways {
		ids = append(ids, g.ID)
	}
	return tid, ids, nil
}

// pickGateway is the gateway asked for, or the document's only one.
func pickGateway(gateways []string, want string) (string, error) {
	if want != "" {
		if !slices.Contains(gateways, want) {
			return "", fmt.Errorf("no gateway %q in the document (it has: %s)", want, listOrNone(gateways))
		}
		return want, nil
	}
	switch len(gateways) {
	case 0:
		return "", errors.New("the document has no gateway; a bundle is a gateway's")
	case 1:
		return gateways[0], nil
	}
	return "", fmt.Errorf("the document has %d gateways (%s); choose one with --gateway", len(gateways), listOrNone(gateways))
}

func listOrNone(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

// offlineOptions are the control plane's settings the compiler uses.
type offlineOptions struct {
	PublicURL     string
	AllowBuiltins []string
}

// compileExport compiles gateway gw of the configuration doc (tenant
// tid) as the bundle manager compiles it.
func compileExport(ctx context.Context, doc []byte, tid, gw string, opts offlineOptions) (*policies.Compiled, error) {
	cfg, err := exportConfig(ctx, doc, tid, opts)
	if err != nil {
		return nil, err
	}
	compiled, err := policies.Compile(cfg, gw)
	if err != nil {
		return nil, fmt.Errorf("compile gateway %s: %w", gw, err)
	}
	return compiled, nil
}

// exportConfig imports doc into tenant tid of a scratch embedded store
// through the admin API's handler (its validation, its stored forms) and
// reads it back as the compiler's configuration, with the settings the
// bundle manager's build sets.
func exportConfig(ctx context.Context, doc []byte, tid string, opts offlineOptions) (*policies.Config, error) {
	dir, err := os.MkdirTemp("", "gatehouse-bundle-build-")
	if err != nil {
		return nil, fmt.Errorf("scratch directory: %w", err)
	}
	defer os.RemoveAll(dir)
	st, err := embedded.Open(ctx, filepath.Join(dir, "store"))
	if err != nil {
		return nil, fmt.Errorf("scratch store: %w", err)
	}
	defer st.Close()
	masterKey := make([]byte, secretbox.KeySize)
	if _, err := rand.Read(masterKey); err != nil {
		return nil, err
	}
	box, err := secretbox.New(masterKey)
	if err != nil {
		return nil, err
	}
	scheme, err := admin.NewScheme()
	if err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	keys := bundles.NewKeyStore(st, box)
	mgr := bundles.NewManager(st, keys, quiet, bundles.WithAllowedBuiltins(opts.AllowBuiltins...),
		bundles.WithInputs(scheme.Bundled()), bundles.WithPublicURL(opts.PublicURL))
	token := make([]byte, 32)
	if _, err := rand.Read(token); err != nil {
		return nil, err
	}
	bootstrap := base64.RawURLEncoding.EncodeToString(token)
	api, err := admin.New(admin.Options{Store: st, BootstrapToken: bootstrap, Logger: quiet, PublicURL: opts.PublicURL,
		Bundles: mgr, Keys: keys, Scheme: scheme, ServerKeys: oauthkeys.NewManager(st, box)})
	if err != nil {
		return nil, err
	}
	call := func(method, path string, body []byte) error {
		req := httptest.NewRequestWithContext(ctx, method, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+bootstrap)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		api.Handler().ServeHTTP(rec, req)
		if rec.Code/100 == 2 {
			return nil
		}
		e := &adminAPIError{Status: rec.Code}
		if json.Unmarshal(rec.Body.Bytes(), e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(rec.Body.String())
		}
		return e
	}
	tenant, _ := json.Marshal(map[string]string{"id": tid, "name": tid})
	if err := call(http.MethodPost, "/api/system/tenants", tenant); err != nil {
		return nil, fmt.Errorf("create tenant %s: %w", tid, err)
	}
	if err := call(http.MethodPut, "/api/system/configuration?tid="+url.QueryEscape(tid), doc); err != nil {
		return nil, fmt.Errorf("the configuration does not import: %w", err)
	}
	var cfg *policies.Config
	err = st.View(ctx, func(ctx context.Context, r store.Reader) error {
		var err error
		cfg, err = bundles.LoadConfig(ctx, r, tid)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read the imported configuration: %w", err)
	}
	// As the bundle manager's build sets them.
	cfg.AllowedBuiltins = mgr.AllowedBuiltins()
	cfg.PublicURL = opts.PublicURL
	return cfg, nil
}

// writeOutput writes the bundle to name (- for stdout) through a
// temporary file, so a failed write leaves no partial bundle.
func writeOutput(name string, raw []byte, stdout io.Writer) error {
	if name == "-" {
		_, err := stdout.Write(raw)
		return err
	}
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, ".bundle-*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(raw); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp, name); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
