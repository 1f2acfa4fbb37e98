package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/gateway/simulate"
	"github.com/gatehouse-dev/gatehouse/gateway/token"
	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// policyEvalConfig are the flags of policy eval.
type policyEvalConfig struct {
	PolicyFile    string
	PolicyID      string
	RequestFile   string
	ConfigFile    string
	Tenant        string
	Gateway       string
	Output        string
	Fail          bool
	Timeout       time.Duration
	AllowBuiltins []string
	AllowPrivate  bool
}

// errDenied is policy eval --fail's error for a denied request.
var errDenied = errors.New("the request is denied")

func newPolicyEvalCommand(stdout, stderr io.Writer) *cobra.Command {
	var cfg policyEvalConfig
	cmd := &cobra.Command{
		Use:   "eval --policy p.rego --request req.json [--config export.json]",
		Short: "Decide an HTTP request as a gateway would, offline, and explain each stage",
		Long: `Decide one HTTP request as a gateway would and explain it stage by stage, as
POST /api/admin/{tid}/policies/test does: the canonical request, the route
matched (API, path parameters) or why none, the bearer token's validation
against the tenant's issuers with its precise reason (expired, audience_mismatch,
…), then the policy's decision with, for a denial, the first failing expression
of your source and the values of its operands.

--request is a JSON file (- for standard input) of the request:
  {"method": "GET", "path": "/pets/7", "query": {"a": "1"},
   "headers": {"Host": "pets.example.com", "Authorization": "Bearer …"}, "body": ""}

With --config (a configuration export, GET /api/system/configuration?tid=…),
the tenant's services, APIs, issuers and policies decide, with --policy in
place of the saved policy of the same id (--policy-id, default the file's
name) on the API the request matches. Without --config, the policy decides
every request of a tenant with one service and no token issuer (every token
is then issuer_unknown).

Nothing is contacted, except the JWK Set URLs of the export's issuers. The
exit code is 0 when the request was decided, 1 with --fail when it is denied.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			err := runPolicyEval(cmd.Context(), cfg, stdout)
			if errors.Is(err, errDenied) {
				cmd.SilenceErrors = true
			}
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&cfg.PolicyFile, "policy", "p", "", "the policy's Rego (package policy); optional with --config and --policy-id (the saved one decides)")
	fs.StringVar(&cfg.PolicyID, "policy-id", "", "the policy's id (default: the --policy file's name without .rego)")
	fs.StringVarP(&cfg.RequestFile, "request", "r", "", "the HTTP request (JSON; - for standard input)")
	fs.StringVarP(&cfg.ConfigFile, "config", "c", "", "a configuration export of the tenant (JSON)")
	fs.StringVar(&cfg.Tenant, "tenant", "", "the tenant id (default: the export's tenant.id)")
	fs.StringVar(&cfg.Gateway, "gateway", "", "the gateway whose bundle decides (default: a gateway over every service)")
	fs.StringVarP(&cfg.Output, "output", "o", "text", "text or json (the API's answer)")
	fs.BoolVar(&cfg.Fail, "fail", false, "exit 1 when the request is denied")
	fs.DurationVar(&cfg.Timeout, "timeout", policies.DefaultTestTimeout, "deadline of the evaluation")
	fs.StringSliceVar(&cfg.AllowBuiltins, "policy-allow-builtins", nil, "the control plane's --policy-allow-builtins")
	fs.BoolVar(&cfg.AllowPrivate, "jwks-allow-private-urls", false, "let issuers' JWK Set URLs name loopback and private addresses")
	return cmd
}

// policyIDChars are the characters a policy id derived from a file name
// keeps.
var policyIDChars = regexp.MustCompile(`[^a-z0-9-]+`)

func runPolicyEval(ctx context.Context, cfg policyEvalConfig, stdout io.Writer) error {
	if cfg.Output != "text" && cfg.Output != "json" {
		return fmt.Errorf("--output %q: want text or json", cfg.Output)
	}
	if cfg.RequestFile == "" {
		return errors.New("--request is required")
	}
	reqDoc, err := readExport(cfg.RequestFile)
	if err != nil {
		return fmt.Errorf("--request: %w", err)
	}
	var req simulate.Request
	dec := json.NewDecoder(strings.NewReader(string(reqDoc)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return fmt.Errorf("--request %s: %w", cfg.RequestFile, err)
	}
	if errs := req.Validate(field.NewPath("request")); len(errs) > 0 {
		return fmt.Errorf("--request %s: %w", cfg.RequestFile, errs)
	}

	id := cfg.PolicyID
	var spec *model.PolicySpec
	if cfg.PolicyFile != "" {
		src, err := os.ReadFile(cfg.PolicyFile)
		if err != nil {
			return fmt.Errorf("--policy: %w", err)
		}
		spec = &model.PolicySpec{Language: model.LanguageRego, Definition: string(src), Type: "api"}
		if id == "" {
			id = strings.Trim(policyIDChars.ReplaceAllString(strings.ToLower(strings.TrimSuffix(filepath.Base(cfg.PolicyFile), ".rego")), "-"), "-")
		}
	}
	if id == "" || !model.ValidObjectID(id) {
		return fmt.Errorf("--policy-id %q: want a policy id (%s), or --policy", id, model.ObjectIDRule)
	}

	var config *policies.Config
	if cfg.ConfigFile != "" {
		doc, err := readExport(cfg.ConfigFile)
		if err != nil {
			return fmt.Errorf("--config: %w", err)
		}
		tid, _, err := exportTenant(doc, cfg.Tenant)
		if err != nil {
			return fmt.Errorf("--config %s: %w", cfg.ConfigFile, err)
		}
		config, err = exportConfig(ctx, doc, tid, offlineOptions{AllowBuiltins: cfg.AllowBuiltins})
		if err != nil {
			return fmt.Errorf("--config %s: %w", cfg.ConfigFile, err)
		}
		if spec == nil && !hasPolicy(config, id) {
			return fmt.Errorf("--policy-id %q: no such policy in %s (give --policy)", id, cfg.ConfigFile)
		}
	} else {
		if spec == nil {
			return errors.New("--policy is required without --config")
		}
		config = standaloneConfig(id)
	}
	checker, err := policies.NewChecker(cfg.AllowBuiltins...)
	if err != nil {
		return err
	}
	res, err := simulate.Run(ctx, simulate.Options{Config: config, PolicyID: id, Policy: spec, EvaluateWith: id,
		GatewayID: cfg.Gateway, AllowedBuiltins: cfg.AllowBuiltins, Checker: checker, Timeout: cfg.Timeout,
		Tokens: token.Options{AllowPrivateNetworks: cfg.AllowPrivate}}, &req)
	var check *policies.CheckError
	if errors.As(err, &check) {
		return fmt.Errorf("%s: %w", cfg.PolicyFile, check)
	}
	if err != nil {
		return err
	}
	if cfg.Output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		writeExplanation(stdout, res)
	}
	if cfg.Fail && !res.Allowed {
		return errDenied
	}
	return nil
}

func hasPolicy(cfg *policies.Config, id string) bool {
	for _, p := range cfg.Policies {
		if p.ID == id {
			return true
		}
	}
	return false
}

// standaloneConfig is the tenant of policy eval without --config: one
// service for every host with one API for every method and path, bound
// to the policy.
func standaloneConfig(policyID string) *policies.Config {
	return &policies.Config{
		Tenant:   policies.Object[model.TenantSpec]{ID: "local", Name: "local", Spec: model.TenantSpec{Name: "local", Status: model.TenantAvailable}},
		Services: []policies.Object[model.ServiceSpec]{{ID: "local", Name: "local", Spec: model.ServiceSpec{URL: "http://127.0.0.1:1"}}},
		APIs: []policies.Object[model.APISpec]{{ID: "any", Spec: model.APISpec{ServiceID: "local", Method: "*", Path: "/{path...}",
			PolicyID: policyID, CanHavePolicy: true}}},
	}
}

// writeExplanation prints a result stage by stage.
func writeExplanation(w io.Writer, r *simulate.Result) {
	verdict := "DENIED"
	if r.Allowed {
		verdict = "ALLOWED"
	}
	fmt.Fprintf(w, "%s %d: %s\n", verdict, r.HTTPStatus, r.Reason)
	s := r.Stages
	fmt.Fprintf(w, "\nrequest  %s %s", s.Request.Method, s.Request.Path)
	if s.Request.Query != "" {
		fmt.Fprintf(w, "?%s", s.Request.Query)
	}
	fmt.Fprintf(w, " (host %q)\n", s.Request.Host)
	if len(s.Request.RemovedHeaders) > 0 {
		fmt.Fprintf(w, "         gateway-owned headers removed: %s\n", strings.Join(s.Request.RemovedHeaders, ", "))
	}
	if s.Request.RefusedReason != "" {
		fmt.Fprintf(w, "         refused %d: %s\n", s.Request.RefusedStatus, s.Request.RefusedReason)
	}
	if s.Route.Matched {
		fmt.Fprintf(w, "route    API %s (%s %s) of service %s on gateway %s", s.Route.APIID, s.Route.Method, s.Route.Path, s.Route.ServiceID, s.Route.GatewayID)
		if len(s.Route.Params) > 0 {
			names := make([]string, 0, len(s.Route.Params))
			for k := range s.Route.Params {
				names = append(names, k)
			}
			sort.Strings(names)
			var parts []string
			for _, k := range names {
				parts = append(parts, fmt.Sprintf("%s=%q", k, s.Route.Params[k]))
			}
			fmt.Fprintf(w, ", params %s", strings.Join(parts, " "))
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "route    none: %s\n", s.Route.Reason)
	}
	switch t := s.Token; {
	case !t.Present:
		fmt.Fprintln(w, "token    none")
	case t.Valid:
		fmt.Fprintf(w, "token    valid: issuer %s, subject %q, scopes [%s]\n", t.Issuer, t.Subject, strings.Join(t.Scopes, " "))
	default:
		fmt.Fprintf(w, "token    invalid (%s): %s\n", t.Reason, t.Detail)
	}
	p := s.Policy
	switch {
	case !p.Ran:
		fmt.Fprintf(w, "policy   %s\n", p.Note)
	default:
		v := "denies"
		if p.Allowed {
			v = "allows"
		}
		fmt.Fprintf(w, "policy   %s %s", p.PolicyID, v)
		if p.DryRun {
			fmt.Fprint(w, " (dry run: the gateway lets the request through)")
		}
		fmt.Fprintln(w)
		if p.Note != "" {
			fmt.Fprintf(w, "         %s\n", p.Note)
		}
		for _, v := range p.Validators {
			mark := "FAIL"
			if v.Passed {
				mark = "pass"
			}
			fmt.Fprintf(w, "         validator %d (%s): %s\n", v.Index, v.Name, mark)
		}
		if f := p.FailedExpression; f != nil {
			text := f.Source
			if text == "" {
				text = f.Text
			}
			fmt.Fprintf(w, "         line %d: %s\n", f.Line, text)
			if f.Source != "" && f.Text != f.Source {
				fmt.Fprintf(w, "           fails at %s\n", f.Text)
			}
			for _, o := range f.Operands {
				switch {
				case o.Undefined:
					fmt.Fprintf(w, "           %s is undefined\n", o.Text)
				case o.Resolved:
					if b, _ := json.Marshal(o.Value); string(b) != o.Text { // constants say nothing more
						fmt.Fprintf(w, "           %s = %s\n", o.Text, b)
					}
				}
			}
		}
	}
}
