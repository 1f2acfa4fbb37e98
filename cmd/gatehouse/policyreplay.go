package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// ExitFlips is the exit status of policy replay when the draft flips a
// decision, or the replay stopped before its end.
const ExitFlips = 2

// policyReplayFlags are the flags of policy replay.
type policyReplayFlags struct {
	client  adminClientFlags
	Tenant  string
	Policy  string
	File    string
	Limit   int
	Gateway string
	JSON    bool
}

func newPolicyReplayCommand(stdout io.Writer) *cobra.Command {
	var f policyReplayFlags
	cmd := &cobra.Command{
		Use:   "replay --tenant t --policy pid -f draft.rego [--limit N] [--gateway g]",
		Short: "Replay a draft of a policy against its last logged decisions (impact analysis)",
		Long: `Replay a draft of a saved policy against the last logged decisions of the APIs
bound to it, on a running control plane (POST …/policies/{pid}/replay), and
show which decisions it would flip: how many allow → deny and deny → allow,
the APIs affected, and the newest flips with their old and new verdicts.
Nothing is saved.

-f is the draft: a Rego file (package policy, defining allow), or a JSON policy
object (.json: {"validators": [...]} or {"definition": "..."}, as the policy API
takes it); - reads standard input (Rego, or JSON when it starts with {).

The draft sees each request as the decision log kept it: the Authorization
header and other credentials erased or masked. The summary says how many
decisions had masked fields and in how many the draft may read one: those
verdicts may differ from what the real request would get.

Exit status: 0 when the draft changes no decision, 2 when it flips some (or the
replay stopped before its end, at the control plane's deadline or scan bound:
what it found is shown), 1 on an error (a draft that does not compile: its line
is named).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := f.request()
			if err != nil {
				return err
			}
			c, err := f.client.client()
			if err != nil {
				return err
			}
			path := "/api/admin/" + url.PathEscape(f.Tenant) + "/policies/" + url.PathEscape(f.Policy) + "/replay"
			resp, err := c.do(cmd.Context(), http.MethodPost, path, body, nil)
			if err != nil {
				return err
			}
			var res policies.ReplayResult
			if err := json.Unmarshal(resp.Body, &res); err != nil {
				return fmt.Errorf("POST %s: decode the answer: %w", path, err)
			}
			if f.JSON {
				if _, err := fmt.Fprintf(stdout, "%s\n", bytes.TrimSpace(resp.Body)); err != nil {
					return err
				}
			} else if err := printReplay(stdout, &f, &res); err != nil {
				return err
			}
			if res.Flips.AllowToDeny+res.Flips.DenyToAllow > 0 || !res.Complete {
				return &exitStatus{code: ExitFlips}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	f.client.register(fs)
	fs.StringVar(&f.Tenant, "tenant", "", "the tenant")
	fs.StringVar(&f.Policy, "policy", "", "the saved policy the draft would replace")
	fs.StringVarP(&f.File, "file", "f", "", "the draft: a Rego file, or a JSON policy object (.json); - for standard input")
	fs.IntVar(&f.Limit, "limit", 0, fmt.Sprintf("how many logged decisions to replay, newest first (default %d, at most %d)", policies.DefaultReplayLimit, policies.MaxReplayLimit))
	fs.StringVar(&f.Gateway, "gateway", "", "replay only this gateway's decisions (default: every gateway of the tenant)")
	fs.BoolVar(&f.JSON, "json", false, "print the control plane's answer (JSON) instead of the summary")
	return cmd
}

// request checks the flags and reads the draft into the replay's body.
func (f *policyReplayFlags) request() (map[string]any, error) {
	switch {
	case f.Tenant == "":
		return nil, errors.New("--tenant is required")
	case !model.ValidTenantID(f.Tenant):
		return nil, fmt.Errorf("--tenant %q: invalid tenant id (%s)", f.Tenant, model.TenantIDRule)
	case f.Policy == "":
		return nil, errors.New("--policy is required: the saved policy the draft would replace")
	case !model.ValidObjectID(f.Policy):
		return nil, fmt.Errorf("--policy %q: invalid id (%s)", f.Policy, model.ObjectIDRule)
	case f.File == "":
		return nil, errors.New("-f/--file is required: the draft (Rego, or a JSON policy object)")
	case f.Limit < 0 || f.Limit > policies.MaxReplayLimit:
		return nil, fmt.Errorf("--limit must be between 1 and %d, not %d", policies.MaxReplayLimit, f.Limit)
	case f.Gateway != "" && !model.ValidObjectID(f.Gateway):
		return nil, fmt.Errorf("--gateway %q: invalid id (%s)", f.Gateway, model.ObjectIDRule)
	}
	draft, err := readDraft(f.File)
	if err != nil {
		return nil, err
	}
	body := map[string]any{"policy": draft}
	if f.Limit > 0 {
		body["limit"] = f.Limit
	}
	if f.Gateway != "" {
		body["gateway_id"] = f.Gateway
	}
	return body, nil
}

// maxDraftSize bounds the draft file: the control plane refuses a policy
// over policies.MaxDefinitionBytes anyway.
const maxDraftSize = 4 << 20

// readDraft reads the draft: a JSON policy object (a .json file, or
// standard input starting with {), else a Rego definition.
func readDraft(name string) (map[string]any, error) {
	var (
		b   []byte
		err error
	)
	if name == "-" {
		b, err = io.ReadAll(io.LimitReader(os.Stdin, maxDraftSize+1))
	} else {
		var fh *os.File
		if fh, err = os.Open(name); err == nil {
			b, err = io.ReadAll(io.LimitReader(fh, maxDraftSize+1))
			fh.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read the draft: %w", err)
	}
	if len(b) > maxDraftSize {
		return nil, fmt.Errorf("the draft %s exceeds %d bytes", name, maxDraftSize)
	}
	isJSON := strings.HasSuffix(strings.ToLower(name), ".json") || (name == "-" && bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")))
	if !isJSON {
		return map[string]any{"definition": string(b)}, nil
	}
	var draft map[string]any
	if err := json.Unmarshal(b, &draft); err != nil || draft == nil {
		if err == nil {
			err = errors.New("not an object")
		}
		return nil, fmt.Errorf("the draft %s is not a JSON policy object: %w", name, err)
	}
	return draft, nil
}

// printReplay writes the summary of a replay.
func printReplay(w io.Writer, f *policyReplayFlags, r *policies.ReplayResult) error {
	var b strings.Builder
	where := "every gateway"
	if f.Gateway != "" {
		where = "gateway " + f.Gateway
	}
	fmt.Fprintf(&b, "Replay of a draft of policy %s (tenant %s, %s)\n", r.PolicyID, f.Tenant, where)
	window := ""
	if r.Oldest != nil && r.Newest != nil {
		window = fmt.Sprintf(", logged %s … %s", r.Oldest.Format(time.RFC3339), r.Newest.Format(time.RFC3339))
	}
	fmt.Fprintf(&b, "  %d decisions evaluated of the last %d of the policy's APIs (limit %d, %d log events read%s)\n",
		r.Evaluated, r.Matched, r.Limit, r.Scanned, window)
	if n := r.Skipped.TokenInvalid + r.Skipped.Unreadable; n > 0 {
		fmt.Fprintf(&b, "  %d skipped: %d denied for an invalid token before any policy ran, %d without an input\n",
			n, r.Skipped.TokenInvalid, r.Skipped.Unreadable)
	}
	fmt.Fprintf(&b, "  flips: %d allow → deny, %d deny → allow\n", r.Flips.AllowToDeny, r.Flips.DenyToAllow)
	fmt.Fprintf(&b, "  unchanged: %d allowed, %d denied", r.Unchanged.Allowed, r.Unchanged.Denied)
	if r.Unchanged.StatusChanged > 0 {
		fmt.Fprintf(&b, " (%d with another status)", r.Unchanged.StatusChanged)
	}
	b.WriteString("\n")
	if r.Errors+r.Timeouts > 0 {
		fmt.Fprintf(&b, "  the draft failed on %d and timed out on %d (denied, as a gateway would)\n", r.Errors, r.Timeouts)
	}
	if r.Masked.Events > 0 {
		fmt.Fprintf(&b, "  masked fields: in %d decisions; the draft may read them in %d", r.Masked.Events, r.Masked.Read)
		if len(r.Masked.Reads) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(r.Masked.Reads, ", "))
		}
		b.WriteString("\n")
	}
	if !r.Complete {
		fmt.Fprintf(&b, "  INCOMPLETE: the replay stopped early (%s); the counts cover what it read\n", r.Stopped)
	}
	if len(r.APIs) > 0 {
		b.WriteString("\nAPIs\n")
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  API\tevaluated\tallow → deny\tdeny → allow")
		for _, a := range r.APIs {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\n", a.APIID, a.Evaluated, a.AllowToDeny, a.DenyToAllow)
		}
		tw.Flush()
	}
	if len(r.Examples) > 0 {
		b.WriteString("\nNewest flips\n")
		for _, x := range r.Examples {
			dir := "allow → deny"
			if x.Flip == policies.FlipDenyToAllow {
				dir = "deny → allow"
			}
			fmt.Fprintf(&b, "  %s  %s %s  (API %s, gateway %s, %s, decision %s)\n", dir, x.Method, x.Path, x.APIID, x.GatewayID,
				x.Time.Format(time.RFC3339), x.DecisionID)
			fmt.Fprintf(&b, "      was: %s\n      now: %s\n", verdictLine(x.Old), verdictLine(x.New))
			if x.ReadsMasked {
				b.WriteString("      (the draft may read a field the log masked in this request)\n")
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// verdictLine renders a verdict: allowed|denied, the status, the reason.
func verdictLine(v policies.Verdict) string {
	s := "denied"
	if v.Allowed {
		s = "allowed"
	}
	switch {
	case v.DryRun:
		s += " (dry-run: let through)"
	case v.HTTPStatus != 0:
		s += fmt.Sprintf(" %d", v.HTTPStatus)
	}
	if v.Reason != "" {
		s += fmt.Sprintf(" %q", v.Reason)
	}
	return s
}
