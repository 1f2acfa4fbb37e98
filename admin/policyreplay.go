package admin

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// The replay endpoint (impact analysis): HTTP plumbing around
// policies.Tester.Replay, which checks and compiles the draft, bounds the
// replay (test slots, deadline) and compares its verdicts with the logged
// ones. This file reads the decision logs for it, newest first, across the
// tenant's gateways.

// policyReplayRequest is a draft of the policy (the policy object, as
// for POST /policies/test), how many logged decisions to replay and,
// optionally, the gateway whose decisions to replay (default: every
// gateway of the tenant).
type policyReplayRequest struct {
	Policy    *policyBody `json:"policy"`
	Limit     int         `json:"limit"`
	GatewayID string      `json:"gateway_id"`
}

// replayPageSize is how many log events one read of a gateway's log
// takes: every gateway's first page is read before the first event is
// replayed, and events can be large, so it stays small.
const replayPageSize = 32

func (s *Server) replayPolicy(c *gin.Context) {
	tid := tenantID(c)
	id, apiErr := objectIDParam(c, "pid")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	var req policyReplayRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if req.Policy == nil {
		abort(c, missingField("policy"))
		return
	}
	if req.Policy.ID != "" && req.Policy.ID != id {
		abort(c, fieldError("policy.id", "is the policy replayed, %q (or absent), not %q", id, req.Policy.ID))
		return
	}
	if req.GatewayID != "" && !model.ValidObjectID(req.GatewayID) {
		abort(c, fieldError("gateway_id", "invalid id %q (%s)", req.GatewayID, model.ObjectIDRule))
		return
	}
	ctx := c.Request.Context()
	saved, err := policyRepo.Get(ctx, s.store, tid, id)
	if err != nil {
		fail(c, err, "policy", id)
		return
	}
	if req.GatewayID != "" {
		if _, err := gatewayRepo.Get(ctx, s.store, tid, req.GatewayID); errors.Is(err, store.ErrNotFound) {
			abort(c, unknownReference("gateway_id", "gateway", req.GatewayID))
			return
		} else if err != nil {
			fail(c, err, "gateway", req.GatewayID)
			return
		}
	}
	if req.Policy.PolicyName == "" {
		req.Policy.PolicyName = saved.Meta.Name
	}
	spec, apiErr := req.Policy.spec(tid)
	if apiErr != nil {
		abort(c, underPolicy(apiErr))
		return
	}
	// The gateways replayed: the one asked for, else those of the
	// configuration the replay compiles (read under its slot).
	var gateways []string
	config := func(ctx context.Context) (*policies.Config, error) {
		cfg, err := s.compilerConfig(ctx, tid)
		if err != nil {
			return nil, err
		}
		// The authoring rules in the tenant, as a save holds the draft to
		// them (allow boolean, references to other policies).
		if problems := s.checker.CheckInTenant(id, &spec, cfg.Policies); len(problems) > 0 {
			name := "definition"
			switch {
			case problems[0].Field != "":
				name = problems[0].Field
			case spec.Language == model.LanguageValidators:
				name = "validators"
			}
			return nil, &policies.CheckError{Field: name, Problems: problems}
		}
		for _, g := range cfg.Gateways {
			if req.GatewayID == "" || g.ID == req.GatewayID {
				gateways = append(gateways, g.ID)
			}
		}
		return cfg, nil
	}
	res, err := s.tester.Replay(ctx, policies.ReplayRequest{
		PolicyID: id, Draft: spec, Limit: req.Limit, Config: config,
		Decisions: func(ctx context.Context, yield func(policies.LoggedDecision) bool) error {
			return s.loggedDecisions(ctx, tid, gateways, yield)
		},
	})
	var (
		logErr *policies.DecisionsError
		check  *policies.CheckError
	)
	switch {
	case errors.As(err, &check): // also from the configuration's step
		s.policyTestFailed(c, tid, draftUnderPolicy(check))
	case errors.As(err, &logErr):
		fail(c, logErr.Err, "decision log", req.GatewayID)
	case err != nil && ctx.Err() != nil:
		abort(c, newError(http.StatusServiceUnavailable, httpapi.CodeUnavailable, "the request ended during the replay", nil))
	case err != nil:
		s.policyTestFailed(c, tid, draftUnderPolicy(err))
	default:
		c.JSON(http.StatusOK, res)
	}
}

// draftUnderPolicy re-addresses the Tester's errors about the draft
// (definition, validators[…]) to where the replay body carries it
// (policy.definition, …); other errors are returned as they are.
func draftUnderPolicy(err error) error {
	var (
		check  *policies.CheckError
		fields field.ErrorList
	)
	switch {
	case errors.As(err, &check):
		out := &policies.CheckError{Field: policyPath.String() + "." + check.Field, Problems: slices.Clone(check.Problems)}
		for i := range out.Problems {
			if out.Problems[i].Field != "" {
				out.Problems[i].Field = policyPath.String() + "." + out.Problems[i].Field
			}
		}
		return out
	case errors.As(err, &fields) && len(fields) > 0 && fields[0].Field != "limit":
		return fields.Under(policyPath)
	}
	return err
}

// loggedDecisions yields the decision log events of the tenant's
// gateways, newest first (by the time the control plane received them),
// merging the gateways' logs a page at a time, until yield returns false.
func (s *Server) loggedDecisions(ctx context.Context, tid string, gateways []string, yield func(policies.LoggedDecision) bool) error {
	type cursor struct {
		gateway string
		items   []*store.LogEntry
		next    string
		done    bool
	}
	read := func(cur *cursor) error {
		pg, err := s.store.ListLog(ctx, store.LogQuery{Stream: bundles.DecisionLog(tid, cur.gateway), Limit: replayPageSize, After: cur.next})
		if err != nil {
			return err
		}
		cur.items, cur.next = pg.Items, pg.Next
		cur.done = len(pg.Items) == 0
		return nil
	}
	curs := make([]*cursor, 0, len(gateways))
	for _, g := range gateways {
		cur := &cursor{gateway: g}
		if err := read(cur); err != nil {
			return err
		}
		if !cur.done {
			curs = append(curs, cur)
		}
	}
	for len(curs) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		newest := 0
		for i, cur := range curs[1:] {
			if cur.items[0].Time.After(curs[newest].items[0].Time) {
				newest = i + 1
			}
		}
		cur := curs[newest]
		e := cur.items[0]
		if !yield(policies.LoggedDecision{GatewayID: cur.gateway, ReceivedAt: e.Time, Event: e.Data}) {
			return nil
		}
		cur.items = cur.items[1:]
		if len(cur.items) == 0 {
			if cur.next == "" {
				cur.done = true
			} else if err := read(cur); err != nil {
				return err
			}
		}
		if cur.done {
			curs = append(curs[:newest], curs[newest+1:]...)
		}
	}
	return nil
}
