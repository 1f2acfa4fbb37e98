package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/model"
)

// gatehouse decisions: a gateway's decision log, read from a running
// control plane (GET …/gateways/{gw}/decisions).

func newDecisionsCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "decisions",
		Short: "Read a gateway's decision log on a running control plane",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newDecisionsTailCommand(stdout, stderr))
	return cmd
}

// decisionsTailFlags are the flags of decisions tail.
type decisionsTailFlags struct {
	client      adminClientFlags
	Tenant      string
	Gateway     string
	Lines       int
	Follow      bool
	Interval    time.Duration
	Denied      bool
	Allowed     bool
	APIID       string
	PolicyID    string
	Subject     string
	HTTPStatus  int
	TokenReason string
	JSON        bool
}

// maxTailPage is the page size of a follower's polls (the API's maximum).
const maxTailPage = 1000

func newDecisionsTailCommand(stdout, stderr io.Writer) *cobra.Command {
	var f decisionsTailFlags
	cmd := &cobra.Command{
		Use:   "tail --tenant t --gateway g [--denied] [--follow] [--api-id a]",
		Short: "Print a gateway's newest decisions, and with --follow the new ones as they come",
		Long: `Print the newest decisions of a gateway (-n, default 10), oldest first, one line
each:

  time  outcome  status  method path  api=…  policy=…  subject=…  reason=…  [token=…]

time is when the authorizer decided; outcome is allowed, denied, or dry-run (let
through only because the gateway runs dry: its policy denied); subject is the
subject of the request's valid bearer token; token is why a bearer token was
refused (expired, audience_mismatch, …). An empty field is "-"; a value with
spaces, quotes or control characters is printed quoted (Go syntax), so what a
client sent cannot write to the terminal.

With --follow it then asks the control plane every --interval for the
decisions newer than the newest it printed and prints them in order: none is
missed or printed twice (the control plane makes decisions visible in the
order of their ids). It stops at Ctrl-C; a control plane that does not answer
is retried (the error on standard error), a refusal (401, 403, 404) ends it.

The filters are the API's: --denied, --allowed, --api-id, --policy-id,
--subject, --http-status, --token-reason. --json prints each decision as the
API gives it (one JSON object a line: id, received_at, event).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			query, err := f.query()
			if err != nil {
				return err
			}
			c, err := f.client.client()
			if err != nil {
				return err
			}
			t := &decisionTail{c: c, f: &f, path: "/api/admin/" + url.PathEscape(f.Tenant) + "/gateways/" + url.PathEscape(f.Gateway) + "/decisions",
				query: query, out: stdout, errOut: stderr}
			return t.run(cmd.Context())
		},
	}
	fs := cmd.Flags()
	f.client.register(fs)
	fs.StringVar(&f.Tenant, "tenant", "", "the tenant (required)")
	fs.StringVar(&f.Gateway, "gateway", "", "the gateway (required)")
	fs.IntVarP(&f.Lines, "lines", "n", 10, fmt.Sprintf("how many of the newest decisions to print first (0 to %d)", maxTailPage))
	fs.BoolVarP(&f.Follow, "follow", "f", false, "keep printing new decisions until interrupted")
	fs.DurationVar(&f.Interval, "interval", 2*time.Second, "with --follow, how often to ask for new decisions (at least 100ms)")
	fs.BoolVar(&f.Denied, "denied", false, "only the decisions that denied the request")
	fs.BoolVar(&f.Allowed, "allowed", false, "only the decisions that allowed the request")
	fs.StringVar(&f.APIID, "api-id", "", "only the decisions of requests that matched this API")
	fs.StringVar(&f.PolicyID, "policy-id", "", "only the decisions of this policy")
	fs.StringVar(&f.Subject, "subject", "", "only the decisions of requests whose valid bearer token has this subject")
	fs.IntVar(&f.HTTPStatus, "http-status", 0, "only the decisions answering this HTTP status")
	fs.StringVar(&f.TokenReason, "token-reason", "", "only the decisions whose bearer token was refused for this reason (expired, audience_mismatch, …)")
	fs.BoolVar(&f.JSON, "json", false, "print each decision as JSON (one object a line)")
	return cmd
}

// query checks the flags and returns the filters as a query string.
func (f *decisionsTailFlags) query() (url.Values, error) {
	switch {
	case f.Tenant == "":
		return nil, errors.New("--tenant is required")
	case !model.ValidTenantID(f.Tenant):
		return nil, fmt.Errorf("--tenant %q: invalid tenant id (%s)", f.Tenant, model.TenantIDRule)
	case f.Gateway == "":
		return nil, errors.New("--gateway is required")
	case !model.ValidObjectID(f.Gateway):
		return nil, fmt.Errorf("--gateway %q: invalid gateway id (%s)", f.Gateway, model.ObjectIDRule)
	case f.Lines < 0 || f.Lines > maxTailPage:
		return nil, fmt.Errorf("--lines %d: want 0 to %d", f.Lines, maxTailPage)
	case f.Follow && f.Interval < 100*time.Millisecond:
		return nil, fmt.Errorf("--interval %s: want at least 100ms", f.Interval)
	case f.Denied && f.Allowed:
		return nil, errors.New("--denied and --allowed exclude each other")
	}
	q := url.Values{}
	if f.Denied {
		q.Set("allowed", "false")
	}
	if f.Allowed {
		q.Set("allowed", "true")
	}
	for _, p := range []struct{ name, v string }{{"api_id", f.APIID}, {"policy_id", f.PolicyID}, {"subject", f.Subject}, {"token_reason", f.TokenReason}} {
		if p.v != "" {
			q.Set(p.name, p.v)
		}
	}
	if f.HTTPStatus != 0 {
		q.Set("http_status", strconv.Itoa(f.HTTPStatus))
	}
	return q, nil
}

// decisionTail prints a gateway's decisions and follows them.
type decisionTail struct {
	c      *adminClient
	f      *decisionsTailFlags
	path   string
	query  url.Values
	out    io.Writer
	errOut io.Writer
}

// listedDecision is one decision of the API's listing.
type listedDecision struct {
	ID         string          `json:"id"`
	ReceivedAt time.Time       `json:"received_at"`
	Event      json.RawMessage `json:"event"`
}

type decisionPage struct {
	Decisions []listedDecision `json:"decisions"`
	Next      string           `json:"next"`
}

func (t *decisionTail) get(ctx context.Context, q url.Values) (*decisionPage, error) {
	var p decisionPage
	if err := t.c.getJSON(ctx, t.path+"?"+q.Encode(), &p); err != nil {
		return nil, err
	}
	return &p, nil
}

func (t *decisionTail) run(ctx context.Context) error {
	q := cloneValues(t.query)
	q.Set("limit", strconv.Itoa(max(t.f.Lines, 1)))
	first, err := t.get(ctx, q)
	if err != nil {
		return err
	}
	since := ""
	if len(first.Decisions) > 0 {
		since = first.Decisions[0].ID
	}
	shown := first.Decisions[:min(t.f.Lines, len(first.Decisions))]
	if err := t.print(shown); err != nil {
		return err
	}
	if !t.f.Follow {
		return nil
	}
	tick := time.NewTicker(t.f.Interval)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		fresh, err := t.newer(ctx, since)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && retryable(err):
			if !failing {
				fmt.Fprintf(t.errOut, "gatehouse: %v (retrying every %s)\n", err, t.f.Interval)
			}
			failing = true
			continue
		case err != nil:
			return err
		}
		if failing {
			fmt.Fprintln(t.errOut, "gatehouse: the control plane answers again")
			failing = false
		}
		if len(fresh) > 0 {
			since = fresh[0].ID
		}
		if err := t.print(fresh); err != nil {
			return err
		}
	}
}

// newer reads every decision newer than since (all of them when since is
// empty), newest first: pages of the listing with since, until its end.
func (t *decisionTail) newer(ctx context.Context, since string) ([]listedDecision, error) {
	q := cloneValues(t.query)
	q.Set("limit", strconv.Itoa(maxTailPage))
	q.Set("total", "false") // not shown: no count at each poll
	if since != "" {
		q.Set("since", since)
	}
	var out []listedDecision
	for {
		p, err := t.get(ctx, q)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Decisions...)
		if p.Next == "" {
			return out, nil
		}
		q.Set("after", p.Next)
	}
}

// retryable reports whether a failed poll may succeed later: the control
// plane unreachable, timing out or answering 5xx (or 429).
func retryable(err error) bool {
	var api *adminAPIError
	if errors.As(err, &api) {
		return api.Status >= 500 || api.Status == 429
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF)
}

// print writes decisions given newest first, oldest first.
func (t *decisionTail) print(ds []listedDecision) error {
	for i := len(ds) - 1; i >= 0; i-- {
		var line string
		if t.f.JSON {
			b, err := json.Marshal(ds[i])
			if err != nil {
				return err
			}
			line = string(b)
		} else {
			line = decisionLine(&ds[i])
		}
		if _, err := fmt.Fprintln(t.out, line); err != nil {
			return err
		}
	}
	return nil
}

// decisionLine renders one decision for the terminal.
func decisionLine(d *listedDecision) string {
	var ev struct {
		Timestamp string `json:"timestamp"`
		Input     struct {
			Attributes struct {
				Request struct {
					HTTP struct {
						Method string `json:"method"`
						Path   string `json:"path"`
					} `json:"http"`
				} `json:"request"`
			} `json:"attributes"`
			Gatehouse struct {
				Token struct {
					Subject string `json:"subject"`
				} `json:"token"`
			} `json:"gatehouse"`
		} `json:"input"`
		Result struct {
			Allowed       *bool  `json:"allowed"`
			PolicyAllowed *bool  `json:"policy_allowed"`
			DryRun        bool   `json:"dry_run"`
			HTTPStatus    any    `json:"http_status"`
			APIID         string `json:"api_id"`
			PolicyID      string `json:"policy_id"`
			Reason        string `json:"reason"`
			TokenReason   string `json:"token_reason"`
		} `json:"result"`
	}
	// Fields of other types than these stay empty; the line is still made.
	_ = json.Unmarshal(d.Event, &ev)
	at := d.ReceivedAt
	if ts, err := time.Parse(time.RFC3339Nano, ev.Timestamp); err == nil {
		at = ts
	}
	r := &ev.Result
	outcome := "-"
	switch {
	case r.Allowed == nil:
	case *r.Allowed && r.DryRun && r.PolicyAllowed != nil && !*r.PolicyAllowed:
		outcome = "dry-run"
	case *r.Allowed:
		outcome = "allowed"
	default:
		outcome = "denied"
	}
	status := "-"
	if n, ok := r.HTTPStatus.(float64); ok {
		status = strconv.FormatFloat(n, 'f', -1, 64)
	}
	h := &ev.Input.Attributes.Request.HTTP
	parts := []string{at.UTC().Format("2006-01-02T15:04:05.000Z"), fmt.Sprintf("%-7s", outcome), fmt.Sprintf("%3s", status),
		tailValue(h.Method) + " " + tailValue(h.Path),
		"api=" + tailValue(r.APIID), "policy=" + tailValue(r.PolicyID), "subject=" + tailValue(ev.Input.Gatehouse.Token.Subject), "reason=" + tailValue(r.Reason)}
	if r.TokenReason != "" {
		parts = append(parts, "token="+tailValue(r.TokenReason))
	}
	return strings.Join(parts, "  ")
}

// tailValue is a value as printed: "-" when empty, quoted (Go syntax) when it
// has spaces, quotes, backslashes or anything not printable.
func tailValue(s string) string {
	if s == "" {
		return "-"
	}
	if strings.IndexFunc(s, func(r rune) bool { return r == ' ' || r == '"' || r == '\\' || !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
