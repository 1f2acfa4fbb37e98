package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Custom logins (login method custom, package oauth): the application at
// the method's login_url finishes a login it was handed with
// POST /api/system/{tid}/logins/{login}/accept or …/reject. The caller
// is a system-wide principal or one of tenant tid (its admin credential
// or admin token); another tenant's is 403, an unknown tenant 404. The
// accepted user must be a live, active user of tenant tid: a login of
// tenant B can never yield A's user. A login is decided once (409 after);
// the answer's redirect_to is where the application sends the browser
// ({issuer}/login/custom/callback?login_id=…&login_state=…), which
// completes the login (or answers the client with the rejection's error).
// The decision is runtime state (package grants), read by the callback;
// an audit event (kind logins, action accept or reject) records who
// decided.

// Bounds of a decision.
const (
	maxLoginAMR         = 10
	maxLoginDescription = 1024
)

// amrValue is an RFC 8176 authentication method reference (or one like it).
var amrValue = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// loginAcceptRequest is the body of …/accept: the user by id or by
// subject (exactly one).
type loginAcceptRequest struct {
	UserID                string         `json:"user_id"`
	Subject               string         `json:"subject"`
	AuthenticationContext map[string]any `json:"authentication_context"`
	AMR                   []string       `json:"amr"`
}

// loginRejectRequest is the body of …/reject.
type loginRejectRequest struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// loginDecisionBody is the answer to accept and reject.
type loginDecisionBody struct {
	RedirectTo string `json:"redirect_to"`
}

// loginRoutes registers the decisions on a group authenticated and bound
// to the path's tenant (/api/system/:tid/logins).
func (s *Server) loginRoutes(g *gin.RouterGroup) {
	g.POST("/:login/accept", s.acceptLogin)
	g.POST("/:login/reject", s.rejectLogin)
}

// pendingLogin is the undecided custom login of the path, or the answer
// (404 unknown or expired, 409 decided) and false.
func (s *Server) pendingLogin(c *gin.Context) (*grants.CustomLogin, bool) {
	tid := tenantID(c)
	id, apiErr := objectIDParam(c, "login")
	if apiErr != nil {
		abort(c, apiErr)
		return nil, false
	}
	ctx := c.Request.Context()
	l, err := grants.NewRecords(s.store, time.Now).CustomLogin(ctx, tid, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		abort(c, notFound("login", id))
		return nil, false
	case err != nil:
		fail(c, err, "login", id)
		return nil, false
	}
	if _, err := s.store.GetState(ctx, grants.KindCustomLoginDecisions, tid, id); err == nil {
		abort(c, loginDecided(id))
		return nil, false
	} else if !errors.Is(err, store.ErrNotFound) {
		fail(c, err, "login", id)
		return nil, false
	}
	return l, true
}

func loginDecided(id string) *Error {
	return newError(http.StatusConflict, httpapi.CodeConflict, fmt.Sprintf("login %q was accepted or rejected already", id), map[string]any{"id": id})
}

// acceptLogin answers POST /api/system/{tid}/logins/{login}/accept.
func (s *Server) acceptLogin(c *gin.Context) {
	tid := tenantID(c)
	var req loginAcceptRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if apiErr := req.validate(); apiErr != nil {
		abort(c, apiErr)
		return
	}
	l, ok := s.pendingLogin(c)
	if !ok {
		return
	}
	var userID string
	if !s.write(c, "login", l.ID, func(ctx context.Context, tx store.Tx) error {
		u, err := loginUser(ctx, tx, tid, &req)
		if err != nil {
			return err
		}
		userID = u.Meta.ID
		return record(ctx, tx, c, tid, "accept", "logins", l.ID)
	}) {
		return
	}
	d := &grants.CustomLoginDecision{Accepted: true, UserID: userID, AMR: req.AMR, AuthContext: req.AuthenticationContext,
		DecidedAt: time.Now().UTC(), DecidedBy: actor(c)}
	s.decideLogin(c, l, d)
}

// rejectLogin answers POST /api/system/{tid}/logins/{login}/reject.
func (s *Server) rejectLogin(c *gin.Context) {
	tid := tenantID(c)
	var req loginRejectRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if req.Error == "" {
		req.Error = grants.CustomRejectErrors[0]
	}
	if !slices.Contains(grants.CustomRejectErrors, req.Error) {
		abort(c, fieldError("error", "must be one of %s, not %q", strings.Join(grants.CustomRejectErrors, ", "), req.Error))
		return
	}
	if msg := oauthDescriptionProblem(req.ErrorDescription); msg != "" {
		abort(c, fieldError("error_description", "%s", msg))
		return
	}
	l, ok := s.pendingLogin(c)
	if !ok {
		return
	}
	if !s.write(c, "login", l.ID, func(ctx context.Context, tx store.Tx) error {
		return record(ctx, tx, c, tid, "reject", "logins", l.ID)
	}) {
		return
	}
	s.decideLogin(c, l, &grants.CustomLoginDecision{Error: req.Error, ErrorDescription: req.ErrorDescription,
		DecidedAt: time.Now().UTC(), DecidedBy: actor(c)})
}

// decideLogin records a decision and answers where the browser goes on.
func (s *Server) decideLogin(c *gin.Context, l *grants.CustomLogin, d *grants.CustomLoginDecision) {
	tid := tenantID(c)
	err := grants.NewRecords(s.store, time.Now).DecideCustomLogin(c.Request.Context(), tid, l, d)
	switch {
	case errors.Is(err, grants.ErrDecided):
		abort(c, loginDecided(l.ID))
		return
	case errors.Is(err, grants.ErrExpired):
		abort(c, notFound("login", l.ID))
		return
	case err != nil:
		fail(c, err, "login", l.ID)
		return
	}
	q := url.Values{"login_id": {l.ID}, "login_state": {l.State}}
	c.JSON(http.StatusOK, loginDecisionBody{RedirectTo: model.IssuerURL(s.public, tid, l.ServerID) + "/login/custom/callback?" + q.Encode()})
}

// validate checks an accept body (the user is looked up later).
func (r *loginAcceptRequest) validate() *Error {
	switch {
	case r.UserID == "" && r.Subject == "":
		return missingField("user_id")
	case r.UserID != "" && r.Subject != "":
		return fieldError("subject", "give user_id or subject, not both")
	case r.UserID != "" && !model.ValidObjectID(r.UserID):
		return fieldError("user_id", "invalid id %q (%s)", r.UserID, model.ObjectIDRule)
	case len(r.Subject) > 512:
		return fieldError("subject", "must be at most 512 bytes")
	case len(r.AMR) > maxLoginAMR:
		return fieldError("amr", "at most %d values are allowed", maxLoginAMR)
	}
	for i, v := range r.AMR {
		if !amrValue.MatchString(v) {
			return fieldError(fmt.Sprintf("amr[%d]", i), "must be 1 to 32 letters, digits, '_' or '-' (RFC 8176 values such as pwd, otp, mfa, hwk)")
		}
	}
	if r.AuthenticationContext != nil {
		if raw, err := json.Marshal(r.AuthenticationContext); err != nil || len(raw) > maxAuthContextBytes {
			return fieldError("authentication_context", "must be a JSON object of at most %d bytes", maxAuthContextBytes)
		}
	}
	return nil
}

// loginUser is the accepted user: a live, active user of tenant tid, by
// id or by subject (404 naming the field when there is none).
func loginUser(ctx context.Context, rd store.Reader, tid string, r *loginAcceptRequest) (*store.Typed[model.UserSpec], error) {
	name, id := "user_id", r.UserID
	if id == "" {
		name = "subject"
		marker, err := rd.GetByName(ctx, model.KindUserSubject, tid, r.Subject)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, unknownUser(name, r.Subject, tid)
		case err != nil:
			return nil, err
		}
		id = marker.ParentID
	}
	u, err := directory.Users.Get(ctx, rd, tid, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, unknownUser(name, map[string]string{"user_id": r.UserID, "subject": r.Subject}[name], tid)
	case err != nil:
		return nil, err
	case u.Spec.State != model.UserActive:
		return nil, fieldError(name, "user %q is %s; only active users sign in", u.Meta.ID, u.Spec.State)
	}
	return u, nil
}

// unknownUser is the 404 of an accept naming no user of the tenant.
func unknownUser(name, value, tid string) *Error {
	return newError(http.StatusNotFound, httpapi.CodeNotFound, fmt.Sprintf("%s: tenant %q has no user %q", name, tid, value),
		map[string]any{"field": name, "kind": "user", "id": value})
}

// oauthDescriptionProblem is what is wrong with an error_description
// (RFC 6749 §5.2: printable ASCII without '"' and '\'), "" nothing.
func oauthDescriptionProblem(s string) string {
	if len(s) > maxLoginDescription {
		return fmt.Sprintf("must be at most %d characters", maxLoginDescription)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return `must be printable ASCII without '"' and '\' (RFC 6749)`
		}
	}
	return ""
}
