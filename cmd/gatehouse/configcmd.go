package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/model"
)

// gatehouse config diff|apply: GitOps against a running control plane.
// Both send the document to the configuration import
// (PUT /api/admin/{tid}/configuration): diff as a dry run, which answers
// the plan the import would carry out (validated as the import validates,
// checked against the stored objects) and writes nothing; apply as the
// import itself, with If-Match set to the configuration the plan was made
// against, so that one transaction applies all of it or, when the
// configuration changed meanwhile, nothing.

// ExitChanges is the exit status of config diff when the plan has changes.
const ExitChanges = 2

// exitStatus is an error carrying a process exit status; an empty message
// prints nothing.
type exitStatus struct {
	code int
	msg  string
}

func (e *exitStatus) Error() string { return e.msg }

// ExitCode is the status the process exits with.
func (e *exitStatus) ExitCode() int { return e.code }

// configFlags are the flags of config diff and apply.
type configFlags struct {
	client adminClientFlags
	File   string
	Tenant string
	Mode   string
	JSON   bool
	// IfMatch (apply): the base_etag of a reviewed plan.
	IfMatch string
}

func (f *configFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	f.client.register(fs)
	fs.StringVarP(&f.File, "file", "f", "", "the configuration document (an export; - for standard input)")
	fs.StringVar(&f.Tenant, "tenant", "", "the tenant to configure (it must exist; the document's tenant.id may name another)")
	fs.StringVar(&f.Mode, "mode", "replace", "replace: objects missing from the document are deleted; merge: nothing is deleted")
	fs.BoolVar(&f.JSON, "json", false, "print the import's answer (JSON) instead of the plan")
}

func (f *configFlags) check() error {
	switch {
	case f.File == "":
		return errors.New("-f/--file is required: the configuration document")
	case f.Tenant == "":
		return errors.New("--tenant is required")
	case !model.ValidTenantID(f.Tenant):
		return fmt.Errorf("--tenant %q: invalid tenant id (%s)", f.Tenant, model.TenantIDRule)
	case f.Mode != "replace" && f.Mode != "merge":
		return fmt.Errorf("--mode must be replace or merge, not %q", f.Mode)
	}
	return nil
}

// prepare checks the flags and returns the client and the document.
func (f *configFlags) prepare() (*adminClient, []byte, error) {
	if err := f.check(); err != nil {
		return nil, nil, err
	}
	c, err := f.client.client()
	if err != nil {
		return nil, nil, err
	}
	doc, err := readExport(f.File)
	if err != nil {
		return nil, nil, err
	}
	return c, doc, nil
}

func newConfigCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Compare and apply a tenant's configuration document (GitOps)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newConfigDiffCommand(stdout), newConfigApplyCommand(stdout, stderr))
	return cmd
}

func newConfigDiffCommand(stdout io.Writer) *cobra.Command {
	var f configFlags
	cmd := &cobra.Command{
		Use:   "diff -f export.json --tenant t",
		Short: "Show what applying a configuration document would change",
		Long: `Show what applying a configuration document to a tenant would create, update
and delete, object by object, without changing anything: the control plane
plans the import (a dry run, validated as the import itself) and answers.

Exit status: 0 when the tenant already has this configuration, 2 when the plan
has changes, 1 on an error (an invalid document: the problem's document path is
named). The plan names the configuration's ETag it was made against; pass it
to config apply --if-match to apply exactly that plan. The token is an admin
credential of the tenant (or a system-wide one).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, doc, err := f.prepare()
			if err != nil {
				return err
			}
			plan, raw, err := importConfig(cmd.Context(), c, f.Tenant, f.Mode, doc, true, "")
			if err != nil {
				return err
			}
			if f.JSON {
				if _, err := fmt.Fprintf(stdout, "%s\n", raw); err != nil {
					return err
				}
			} else {
				printPlan(stdout, f.Tenant, plan, true)
				if len(plan.Changes) > 0 {
					fmt.Fprintf(stdout, "To apply exactly this plan: gatehouse config apply -f %s --tenant %s --if-match '%s'\n", f.File, f.Tenant, plan.BaseETag)
				}
			}
			if len(plan.Changes) > 0 {
				return &exitStatus{code: ExitChanges}
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func newConfigApplyCommand(stdout, stderr io.Writer) *cobra.Command {
	var f configFlags
	cmd := &cobra.Command{
		Use:   "apply -f export.json --tenant t",
		Short: "Apply a configuration document to a tenant, all or nothing",
		Long: `Apply a configuration document to a tenant in one transaction: every object is
created, updated or deleted, or, on any problem, nothing is.

Without --if-match it plans first (as config diff) and applies that plan with
If-Match: if the tenant's configuration changes between the two, nothing is
applied. With --if-match (the ETag config diff printed) it applies only if
the configuration is still the one that plan was made against, which is how
a reviewed plan is applied in a pipeline. The token is an admin credential of
the tenant (or a system-wide one).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, doc, err := f.prepare()
			if err != nil {
				return err
			}
			base := f.IfMatch
			if base == "" {
				plan, _, err := importConfig(cmd.Context(), c, f.Tenant, f.Mode, doc, true, "")
				if err != nil {
					return fmt.Errorf("nothing applied: %w", err)
				}
				if len(plan.Changes) == 0 {
					printPlan(stdout, f.Tenant, plan, true)
					return nil
				}
				base = plan.BaseETag
			} else if base = quoteETag(base); !strings.HasPrefix(base, `"cfg-`) {
				return fmt.Errorf("--if-match %s: want the configuration ETag config diff printed (\"cfg-…\")", f.IfMatch)
			}
			done, raw, err := importConfig(cmd.Context(), c, f.Tenant, f.Mode, doc, false, base)
			var apiErr *adminAPIError
			if errors.As(err, &apiErr) && apiErr.Status == http.StatusPreconditionFailed {
				return fmt.Errorf("nothing applied: the configuration of tenant %s changed since the plan (%s; it is now %v); run gatehouse config diff again",
					f.Tenant, base, apiErr.Details["etag"])
			}
			if err != nil {
				return fmt.Errorf("nothing applied: %w", err)
			}
			if f.JSON {
				_, err := fmt.Fprintf(stdout, "%s\n", raw)
				return err
			}
			printPlan(stdout, f.Tenant, done, false)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&f.IfMatch, "if-match", "", "apply only if the configuration is still the one this ETag (from config diff) names")
	return cmd
}

// quoteETag adds the quotes an ETag given on a command line lost.
func quoteETag(v string) string {
	v = strings.TrimSpace(v)
	if !strings.HasPrefix(v, `"`) {
		v = `"` + v + `"`
	}
	return v
}

// importResult is the answer of the configuration import.
type importResult struct {
	Created   map[string]int `json:"created"`
	Updated   map[string]int `json:"updated"`
	Deleted   map[string]int `json:"deleted"`
	Unchanged map[string]int `json:"unchanged"`
	Changes   []struct {
		Kind   string   `json:"kind"`
		ID     string   `json:"id"`
		Action string   `json:"action"`
		Fields []string `json:"fields"`
	} `json:"changes"`
	DryRun   bool   `json:"dry_run"`
	BaseETag string `json:"base_etag"`
	ETag     string `json:"etag"`
}

// importConfig sends doc to the configuration import of tenant tid.
func importConfig(ctx context.Context, c *adminClient, tid, mode string, doc []byte, dryRun bool, ifMatch string) (*importResult, []byte, error) {
	q := url.Values{"mode": {mode}}
	if dryRun {
		q.Set("dry_run", "true")
	}
	h := http.Header{}
	if ifMatch != "" {
		h.Set("If-Match", ifMatch)
	}
	r, err := c.do(ctx, http.MethodPut, "/api/admin/"+url.PathEscape(tid)+"/configuration?"+q.Encode(), json.RawMessage(doc), h)
	if err != nil {
		return nil, nil, err
	}
	var out importResult
	if err := json.Unmarshal(r.Body, &out); err != nil {
		return nil, nil, fmt.Errorf("decode the import's answer: %w", err)
	}
	if out.BaseETag == "" {
		return nil, nil, errors.New("the control plane's import answered no base_etag: it predates dry runs and If-Match; upgrade it")
	}
	return &out, r.Body, nil
}

// printPlan writes the changes, one a line, then the counts.
func printPlan(w io.Writer, tid string, p *importResult, plan bool) {
	if len(p.Changes) == 0 {
		fmt.Fprintf(w, "No changes: tenant %s already has this configuration (%s).\n", tid, p.BaseETag)
		return
	}
	verb := "Applied to"
	if plan {
		verb = "Plan for"
	}
	fmt.Fprintf(w, "%s tenant %s (configuration %s):\n", verb, tid, p.BaseETag)
	sign := map[string]string{"create": "+", "update": "~", "delete": "-"}
	for _, c := range p.Changes {
		line := fmt.Sprintf("  %s %s/%s", sign[c.Action], c.Kind, c.ID)
		if len(c.Fields) > 0 {
			line += " (" + strings.Join(c.Fields, ", ") + ")"
		}
		fmt.Fprintln(w, line)
	}
	n := map[string]int{}
	for _, c := range p.Changes {
		n[c.Action]++
	}
	unchanged := 0
	for _, v := range p.Unchanged {
		unchanged += v
	}
	if plan {
		fmt.Fprintf(w, "%d to create, %d to update, %d to delete, %d unchanged.\n", n["create"], n["update"], n["delete"], unchanged)
		return
	}
	fmt.Fprintf(w, "%d created, %d updated, %d deleted, %d unchanged. The configuration is now %s.\n",
		n["create"], n["update"], n["delete"], unchanged, p.ETag)
}
