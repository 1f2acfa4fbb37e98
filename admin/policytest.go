package admin

import (
	"context"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/gateway/simulate"
	"github.com/gatehouse-dev/gatehouse/gateway/token"
	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// The policy test endpoints: HTTP plumbing around policies.Tester, which
// runs the test (limits, concurrency bound, deadline, canonical request,
// explanation).

// policyTestRequest evaluates a policy: against an input document
// (Input, the raw form for Rego experts), or against a whole HTTP request
// run through a gateway's pipeline (Request, on GatewayID or a gateway
// over every service). For POST /policies/test the policy itself is in
// the body.
type policyTestRequest struct {
	Input     map[string]any    `json:"input"`
	Request   *simulate.Request `json:"request"`
	GatewayID string            `json:"gateway_id"`
	Policy    *policyBody       `json:"policy"`
}

// policyPath is where POST /policies/test carries the policy.
var policyPath = field.NewPath("policy")

// form checks that the body has one of input and request.
func (r *policyTestRequest) form() *Error {
	switch {
	case r.Input != nil && r.Request != nil:
		return fieldError("request", "give input or request, not both")
	case r.Input == nil && r.Request == nil:
		return httpapi.FieldErrors(field.ErrorList{{Field: "request", Code: field.CodeRequired, Message: "input or request is required"}})
	case r.Input != nil && r.GatewayID != "":
		return fieldError("gateway_id", "is only used with request (an input document names no gateway)")
	case r.Request != nil:
		if errs := r.Request.Validate(field.NewPath("request")); len(errs) > 0 {
			return httpapi.FieldErrors(errs)
		}
		if r.GatewayID != "" && !model.ValidObjectID(r.GatewayID) {
			return fieldError("gateway_id", "invalid id %q (%s)", r.GatewayID, model.ObjectIDRule)
		}
	}
	return nil
}

func (s *Server) testPolicy(c *gin.Context) {
	tid := tenantID(c)
	id, apiErr := objectIDParam(c, "pid")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	var req policyTestRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if req.Policy != nil {
		abort(c, fieldError("policy", "is only accepted by POST /policies/test (this policy is the saved one)"))
		return
	}
	if apiErr := req.form(); apiErr != nil {
		abort(c, apiErr)
		return
	}
	t, err := policyRepo.Get(c.Request.Context(), s.store, tid, id)
	if err != nil {
		fail(c, err, "policy", id)
		return
	}
	if req.Request != nil {
		s.simulateRequest(c, tid, id, nil, &req)
		return
	}
	s.runPolicyTest(c, tid, policies.TestRequest{PolicyID: id, Policy: t.Spec, Input: req.Input})
}

func (s *Server) testUnsavedPolicy(c *gin.Context) {
	tid := tenantID(c)
	var req policyTestRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if req.Policy == nil {
		abort(c, missingField("policy"))
		return
	}
	if apiErr := req.form(); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if req.Policy.PolicyName == "" {
		req.Policy.PolicyName = "unsaved"
	}
	spec, apiErr := req.Policy.spec(tid)
	if apiErr != nil {
		abort(c, underPolicy(apiErr))
		return
	}
	if req.Request != nil {
		// A draft of a saved policy (policy.id) replaces it; any other is
		// tested as UnsavedPolicyID.
		id := policies.UnsavedPolicyID
		if req.Policy.ID != "" {
			if !model.ValidObjectID(req.Policy.ID) {
				abort(c, fieldError("policy.id", "invalid id %q (%s)", req.Policy.ID, model.ObjectIDRule))
				return
			}
			id = req.Policy.ID
		}
		if err := s.tester.Check(id, &spec); err != nil {
			s.policyTestFailed(c, tid, err)
			return
		}
		s.simulateRequest(c, tid, id, &spec, &req)
		return
	}
	s.runPolicyTest(c, tid, policies.TestRequest{Policy: spec, Input: req.Input})
}

// simulateRequest runs req.Request through the gateway's pipeline with
// policy id (spec, when set, in place of its saved version) deciding the
// matched API, in one of the Tester's slots and under its deadline.
func (s *Server) simulateRequest(c *gin.Context, tid, id string, spec *model.PolicySpec, req *policyTestRequest) {
	ctx := c.Request.Context()
	release, err := s.tester.Acquire(ctx)
	if err != nil {
		s.policyTestFailed(c, tid, err)
		return
	}
	defer release()
	cfg, err := s.compilerConfig(ctx, tid)
	if err != nil {
		fail(c, err, "tenant", tid)
		return
	}
	res, err := simulate.Run(ctx, simulate.Options{
		Config: cfg, PolicyID: id, Policy: spec, EvaluateWith: id, GatewayID: req.GatewayID,
		AllowedBuiltins: s.checker.AllowedBuiltins(), Timeout: s.tester.Timeout(),
		Tokens: token.Options{AllowPrivateNetworks: s.allowPrivateJWKSURLs, Logger: s.log.With("component", "policy-test-tokens")},
	}, req.Request)
	var (
		unknownGateway *simulate.UnknownGatewayError
		invalid        *simulate.InvalidPolicyError
	)
	switch {
	case errors.As(err, &unknownGateway):
		abort(c, unknownReference("gateway_id", "gateway", unknownGateway.GatewayID))
	case errors.As(err, &invalid):
		abort(c, newError(http.StatusBadRequest, CodeInvalidPolicy, invalid.Error(), map[string]any{"field": "definition"}))
	case err != nil:
		abort(c, internalError(err))
	default:
		c.JSON(http.StatusOK, res)
	}
}

// compilerConfig is the tenant's configuration as the bundle manager
// compiles it (with this control plane's public URL), read in one
// transaction.
func (s *Server) compilerConfig(ctx context.Context, tid string) (*policies.Config, error) {
	var cfg *policies.Config
	err := s.store.View(ctx, func(ctx context.Context, r store.Reader) error {
		var err error
		cfg, err = bundles.LoadConfig(ctx, r, tid)
		if cfg != nil {
			cfg.PublicURL = s.public
		}
		return err
	})
	return cfg, err
}

// runPolicyTest runs the test with the tenant's configuration and renders
// its result or error.
func (s *Server) runPolicyTest(c *gin.Context, tid string, req policies.TestRequest) {
	req.Config = func(ctx context.Context) (*policies.Config, error) { return s.compilerConfig(ctx, tid) }
	res, err := s.tester.Run(c.Request.Context(), req)
	if err != nil {
		s.policyTestFailed(c, tid, err)
		return
	}
	c.JSON(http.StatusOK, res)
}

// policyTestFailed renders an error of policies.Tester.Run.
func (s *Server) policyTestFailed(c *gin.Context, tid string, err error) {
	var (
		cfgErr *policies.ConfigError
		check  *policies.CheckError
		fields field.ErrorList
	)
	switch {
	case errors.As(err, &cfgErr):
		fail(c, cfgErr.Err, "tenant", tid)
	case errors.As(err, &check):
		code := CodeInvalidPolicy
		if check.LimitExceeded() {
			code = CodeLimitExceeded
		}
		abort(c, newError(http.StatusBadRequest, code, check.Error(),
			map[string]any{"field": check.Field, "errors": check.Problems}))
	case errors.As(err, &fields) && len(fields) > 0:
		abort(c, s.policyTestFieldError(fields[0]))
	case errors.Is(err, policies.ErrBusy):
		c.Header("Retry-After", "1")
		abort(c, newError(http.StatusServiceUnavailable, httpapi.CodeUnavailable, "too many policy tests are running; retry shortly", nil))
	case errors.Is(err, policies.ErrWaitEnded):
		abort(c, newError(http.StatusServiceUnavailable, httpapi.CodeUnavailable, "the request ended while waiting to run the policy test", nil))
	default:
		abort(c, internalError(err))
	}
}

// policyTestFieldError is the 400 of a field error of the Tester.
func (s *Server) policyTestFieldError(e *field.Error) *Error {
	switch e.Code {
	case field.CodeRequired:
		return missingField(e.Field)
	case policies.CodeEvaluationTimeout:
		return newError(http.StatusBadRequest, CodeEvaluationTimeout, e.Error(),
			map[string]any{"field": e.Field, "timeout_ms": s.tester.Timeout().Milliseconds()})
	case policies.CodeEvaluationError:
		return newError(http.StatusBadRequest, httpapi.CodeEvaluation, e.Message, map[string]any{"field": e.Field})
	case policies.CodeInvalidPolicy:
		return newError(http.StatusBadRequest, CodeInvalidPolicy, e.Message, map[string]any{"field": e.Field})
	}
	return fieldError(e.Field, "%s", e.Message)
}

// underPolicy re-addresses an error about a field of the policy object
// (policyBody.spec) to its place in the test body: "validators" is
// "policy.validators". The message stays as it is.
func underPolicy(e *Error) *Error {
	if l, ok := e.Details["errors"].(field.ErrorList); ok {
		e.Details["errors"] = l.Under(policyPath)
	}
	if name, ok := e.Details["field"].(string); ok {
		e.Details["field"] = field.ErrorList{{Field: name}}.Under(policyPath)[0].Field
	}
	return e
}
