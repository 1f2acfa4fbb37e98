package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// ExitTestsFailed is the exit status of policy test when a test fails or
// errors, or a policy would be refused (as opa test's).
const ExitTestsFailed = 2

// policyTestFlags are the flags of policy test.
type policyTestFlags struct {
	ConfigFile    string
	Tenant        string
	Verbose       bool
	Run           string
	Timeout       time.Duration
	AllowBuiltins []string
	FailOnEmpty   bool
}

func newPolicyTestCommand(stdout, stderr io.Writer) *cobra.Command {
	var f policyTestFlags
	cmd := &cobra.Command{
		Use:   "test [files|dirs] [--config export.json]",
		Short: "Run policies' tests offline, as opa test does",
		Long: `Run the test_ rules of policies offline and report each, as opa test does:
PASS/FAIL/ERROR per test (only those that do not pass without -v), then the
summary (PASS: n/m).

Local files: every .rego file given, or under a directory given, is a policy
whose id is its file name (admins.rego is policy admins, package policy),
and every <id>_test.rego its tests module (package policy, beside the
policy's rules, or package policy_test, reading them as data.policy). The
tests see the policy as written, the built-in library, the other policies
by id (data.gatehouse.policies["<id>"]) and input from their fixtures
(with input as {...}).

With --config (a configuration export, GET /api/system/configuration?tid=…),
the export's policies and their tests modules run too, against the
tenant's data.gatehouse.config; a local file replaces the export's policy
(or tests) of its id. Each policy tested is first checked as a save would
check it (its type rules, references, cycles): a policy a save would refuse
is an error.

Exit status: 0 when every test passes (todo_test_ ones are skipped), 2 when
one fails or errors or a policy would be refused, 1 when the files or the
export cannot be read. Nothing is contacted.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPolicyTest(cmd.Context(), f, args, stdout, stderr)
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.ConfigFile, "config", "c", "", "a configuration export of the tenant (JSON; - for standard input)")
	fs.StringVar(&f.Tenant, "tenant", "", "the tenant id (default: the export's tenant.id, else local)")
	fs.BoolVarP(&f.Verbose, "verbose", "v", false, "report every test, and what tests print")
	fs.StringVarP(&f.Run, "run", "r", "", "run only the tests whose name (data.policy_test.test_x) matches this regular expression")
	fs.DurationVar(&f.Timeout, "timeout", policies.DefaultTestTimeout, "deadline of one policy's tests (the control plane's --policy-test-timeout)")
	fs.StringSliceVar(&f.AllowBuiltins, "policy-allow-builtins", nil, "the control plane's --policy-allow-builtins")
	fs.BoolVar(&f.FailOnEmpty, "fail-on-empty", false, "exit 1 when no test is found")
	return cmd
}

// testedPolicy is a policy whose tests run, and where its parts come from
// (a local file, or the export: "").
type testedPolicy struct {
	id                    string
	policyFile, testsFile string
	spec                  model.PolicySpec
}

// source names where a policy's tests (or its definition) are, in the
// report.
func (p *testedPolicy) source(tests bool) string {
	switch {
	case tests && p.testsFile != "":
		return p.testsFile
	case !tests && p.policyFile != "":
		return p.policyFile
	case tests:
		return "policy " + p.id + " (tests, from the export)"
	}
	return "policy " + p.id + " (from the export)"
}

func runPolicyTest(ctx context.Context, f policyTestFlags, paths []string, stdout, stderr io.Writer) error {
	var run *regexp.Regexp
	if f.Run != "" {
		var err error
		if run, err = regexp.Compile(f.Run); err != nil {
			return fmt.Errorf("--run: %w", err)
		}
	}
	if len(paths) == 0 && f.ConfigFile == "" {
		return errors.New("give .rego files or directories, or --config export.json")
	}
	checker, err := policies.NewChecker(f.AllowBuiltins...)
	if err != nil {
		return fmt.Errorf("--policy-allow-builtins: %w", err)
	}
	cfg, err := policyTestConfig(ctx, f)
	if err != nil {
		return err
	}
	tested, err := loadLocalPolicies(paths, cfg)
	if err != nil {
		return err
	}
	tester := policies.NewTester(checker, 1, f.Timeout)
	r := &policyTestReport{out: stdout, verbose: f.Verbose}
	for _, p := range tested {
		if problems := checker.CheckInTenant(p.id, &p.spec, cfg.Policies); len(problems) > 0 {
			r.refused(p, problems)
			continue
		}
		if p.spec.Tests == "" {
			continue
		}
		report, err := tester.RunTests(ctx, policies.TestsRequest{PolicyID: p.id, Policy: p.spec, Run: run,
			Config: func(context.Context) (*policies.Config, error) { return cloneConfig(cfg), nil }})
		var check *policies.CheckError
		switch {
		case errors.As(err, &check):
			r.refused(p, check.Problems)
		case err != nil:
			return fmt.Errorf("policy %s: %w", p.id, err)
		default:
			r.tests(p, report)
		}
	}
	return r.finish(stderr, f.FailOnEmpty)
}

// policyTestConfig is the tenant the tests run in: the export's, or an
// empty one.
func policyTestConfig(ctx context.Context, f policyTestFlags) (*policies.Config, error) {
	if f.ConfigFile == "" {
		tid := f.Tenant
		if tid == "" {
			tid = "local"
		}
		if !model.ValidTenantID(tid) {
			return nil, fmt.Errorf("--tenant: invalid tenant id %q (%s)", tid, model.TenantIDRule)
		}
		return &policies.Config{Tenant: policies.Object[model.TenantSpec]{ID: tid, Name: tid, Spec: model.TenantSpec{Name: tid}},
			AllowedBuiltins: f.AllowBuiltins}, nil
	}
	doc, err := readExport(f.ConfigFile)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	tid, _, err := exportTenant(doc, f.Tenant)
	if err != nil {
		return nil, fmt.Errorf("--config %s: %w", f.ConfigFile, err)
	}
	cfg, err := exportConfig(ctx, doc, tid, offlineOptions{AllowBuiltins: f.AllowBuiltins})
	if err != nil {
		return nil, fmt.Errorf("--config %s: %w", f.ConfigFile, err)
	}
	return cfg, nil
}

// cloneConfig is a copy of cfg whose lists a test run may change.
func cloneConfig(cfg *policies.Config) *policies.Config {
	c := *cfg
	c.Policies = slices.Clone(cfg.Policies)
	c.Gateways = slices.Clone(cfg.Gateways)
	return &c
}

// loadLocalPolicies reads the .rego files of paths into cfg's policies (a
// file replaces the export's definition or tests of its id) and returns
// the policies to test, by id: every one with a local file, and the
// export's that have tests.
func loadLocalPolicies(paths []string, cfg *policies.Config) ([]*testedPolicy, error) {
	byID := map[string]*testedPolicy{}
	index := map[string]int{}
	for i, p := range cfg.Policies {
		index[p.ID] = i
		if p.Spec.Tests != "" {
			byID[p.ID] = &testedPolicy{id: p.ID, spec: p.Spec}
		}
	}
	files, err := regoFiles(paths)
	if err != nil {
		return nil, err
	}
	seen := map[string]string{}
	for _, file := range files {
		base := filepath.Base(file)
		id, isTests := strings.CutSuffix(base, "_test.rego")
		if !isTests {
			id = strings.TrimSuffix(base, ".rego")
		}
		if !model.ValidObjectID(id) {
			return nil, fmt.Errorf("%s: a policy's id is its file name, and %q is not a policy id (%s)", file, id, model.ObjectIDRule)
		}
		key := base
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("%s and %s are both %s", prev, file, key)
		}
		seen[key] = file
		src, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		p := byID[id]
		if p == nil {
			p = &testedPolicy{id: id}
			if i, stored := index[id]; stored {
				p.spec = cfg.Policies[i].Spec
			}
			byID[id] = p
		}
		if isTests {
			p.testsFile, p.spec.Tests = file, string(src)
		} else {
			p.policyFile = file
			p.spec.Language, p.spec.Definition, p.spec.Validators = model.LanguageRego, string(src), nil
			if p.spec.Type == "" {
				p.spec.Type = "api"
			}
		}
	}
	var out []*testedPolicy
	for _, id := range sortedIDs(byID) {
		p := byID[id]
		if p.spec.Language == "" {
			return nil, fmt.Errorf("%s: tests of policy %s, which is neither a local file (%s.rego) nor in the export", p.testsFile, id, id)
		}
		obj := policies.Object[model.PolicySpec]{ID: id, Name: id, Spec: p.spec}
		if i, stored := index[id]; stored {
			obj.Name, obj.Description = cfg.Policies[i].Name, cfg.Policies[i].Description
			cfg.Policies[i] = obj
		} else {
			cfg.Policies = append(cfg.Policies, obj)
		}
		out = append(out, p)
	}
	return out, nil
}

func sortedIDs(m map[string]*testedPolicy) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// regoFiles are the .rego files of paths (files, or directories walked;
// hidden directories below them are skipped), sorted.
func regoFiles(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			if filepath.Ext(p) != ".rego" {
				return nil, fmt.Errorf("%s: not a .rego file", p)
			}
			out = append(out, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			switch {
			case err != nil:
				return err
			case d.IsDir() && path != p && strings.HasPrefix(d.Name(), "."):
				return filepath.SkipDir
			case !d.IsDir() && filepath.Ext(path) == ".rego":
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(out)
	return slices.Compact(out), nil
}

// policyTestReport writes results as opa test does.
type policyTestReport struct {
	out                    io.Writer
	verbose                bool
	pass, fail, errs, skip int
	lastSource             string
	failing                bool
}

func (r *policyTestReport) header(source string, line int) {
	if r.lastSource != "" && r.lastSource != source {
		fmt.Fprintln(r.out)
	}
	r.lastSource = source
	if line > 0 {
		fmt.Fprintf(r.out, "%s:%d:\n", source, line)
	} else {
		fmt.Fprintf(r.out, "%s:\n", source)
	}
}

// refused reports a policy a save would refuse: each problem is an error.
func (r *policyTestReport) refused(p *testedPolicy, problems []policies.Problem) {
	r.failing = true
	for _, pr := range problems {
		r.errs++
		src := p.source(pr.Field == "tests")
		r.header(src, pr.Line)
		fmt.Fprintf(r.out, "policy %s: ERROR (refused: %s)\n  %s\n", p.id, pr.Code, pr.Message)
	}
}

// tests reports a policy's tests.
func (r *policyTestReport) tests(p *testedPolicy, report *policies.TestsReport) {
	for _, tc := range report.Tests {
		var outcome string
		switch tc.Outcome {
		case policies.TestPass:
			r.pass++
			outcome = "PASS"
		case policies.TestFail:
			r.fail++
			outcome = "FAIL"
		case policies.TestSkip:
			r.skip++
			outcome = "SKIPPED"
		default:
			r.errs++
			outcome = "ERROR"
		}
		bad := tc.Outcome == policies.TestFail || tc.Outcome == policies.TestError
		r.failing = r.failing || bad
		if !bad && !r.verbose {
			continue
		}
		r.header(p.source(true), tc.Line)
		fmt.Fprintf(r.out, "%s: %s (%v)\n", tc.FullName(), outcome, tc.Duration)
		if tc.Message != "" {
			fmt.Fprintf(r.out, "  %s\n", tc.Message)
		}
		if r.verbose && tc.Output != "" {
			for _, l := range strings.Split(strings.TrimRight(tc.Output, "\n"), "\n") {
				fmt.Fprintf(r.out, "  %s\n", l)
			}
		}
	}
}

// finish writes the summary and returns the command's outcome.
func (r *policyTestReport) finish(stderr io.Writer, failOnEmpty bool) error {
	total := r.pass + r.fail + r.errs + r.skip
	if total == 0 {
		fmt.Fprintln(stderr, "no tests found")
		if failOnEmpty {
			return &exitStatus{code: 1, msg: ""}
		}
		return nil
	}
	if r.lastSource != "" {
		fmt.Fprintln(r.out, strings.Repeat("-", 80))
	}
	for _, c := range []struct {
		what string
		n    int
	}{{"PASS", r.pass}, {"FAIL", r.fail}, {"SKIPPED", r.skip}, {"ERROR", r.errs}} {
		if c.n > 0 {
			fmt.Fprintf(r.out, "%s: %d/%d\n", c.what, c.n, total)
		}
	}
	if r.failing {
		return &exitStatus{code: ExitTestsFailed, msg: ""}
	}
	return nil
}
