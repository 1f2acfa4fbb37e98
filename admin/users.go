package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/passwords"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Users (WAVE2 §1.2 rows 47–50, §1.3 users, §1.4 rows 24–33):
// /api/admin/{tid}/users[/{uid}], with PUT …/state, POST …/restore,
// POST …/recover, PUT …/reset-mfa, POST …/mappings, DELETE
// …/mappings/{mid} and GET /users/mapping/{idp}/{external_subject}.
//
// A user's id is the sub of the tokens the tenant's servers issue for it.
// Its email (normalized: the envelope name) and its subject (a marker
// object, directory.CreateUser) are unique among the tenant's live users;
// a soft delete frees both, and deletes its identity mappings, in the
// delete's transaction. Suspending a user (state suspended or pending) or
// deleting it revokes its tokens at every server of the tenant (a
// not-before revocation each, in the same transaction) and deletes its
// refresh tokens once that committed. A password is write-only (argon2id,
// internal/passwords); password hashes and TOTP seeds are never rendered
// nor exported.

// User field limits.
const (
	minUserPassword   = 8
	maxUserEmail      = 254
	maxUserText       = 256
	maxUserIDsFilter  = 100
	maxExternalSubjet = 1024
)

// reservedUserID is the path segment of GET /users/mapping/…: no user
// may have it as id.
const reservedUserID = "mapping"

// userLocalePattern: a BCP 47-like language tag ("en", "pt-BR", "zh_Hant").
var userLocalePattern = regexp.MustCompile(`^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*$`)

// userMappingBody is one identity mapping on the wire.
type userMappingBody struct {
	ID                 string `json:"id"`
	IdentityProviderID string `json:"identity_provider_id"`
	ExternalSubject    string `json:"external_subject"`
}

// userStatus is a user's live status: read-only, and ignored when a PUT
// sends it back (it changes with every login).
type userStatus struct {
	LastActive *time.Time `json:"last_active"`
}

// userBody is a user as GET renders it.
type userBody struct {
	ID                string            `json:"id"`
	TenantID          string            `json:"tenant_id"`
	Subject           string            `json:"subject"`
	Email             string            `json:"email"`
	EmailVerified     bool              `json:"email_verified"`
	GivenName         string            `json:"given_name"`
	FamilyName        string            `json:"family_name"`
	Name              string            `json:"name"`
	PreferredUsername string            `json:"preferred_username"`
	Locale            string            `json:"locale"`
	State             model.UserState   `json:"state"`
	Active            bool              `json:"active"`
	Status            userStatus        `json:"status"`
	IdentityMappings  []userMappingBody `json:"identity_mappings"`
	Description       string            `json:"description"`
	Labels            map[string]string `json:"labels"`
	Metadata          *Metadata         `json:"metadata,omitempty"`
}

// userRequest is the body of create and PUT: userBody's fields (name,
// identity_mappings and status read-only), the seed's aliases of the
// names (firstname/firstName, lastname/lastName) and the write-only
// password.
type userRequest struct {
	ID                string            `json:"id"`
	TenantID          string            `json:"tenant_id"`
	Subject           string            `json:"subject"`
	Email             string            `json:"email"`
	EmailVerified     bool              `json:"email_verified"`
	GivenName         string            `json:"given_name"`
	FirstnameLower    string            `json:"firstname"`
	FirstNameCamel    string            `json:"firstName"`
	FamilyName        string            `json:"family_name"`
	LastnameLower     string            `json:"lastname"`
	LastNameCamel     string            `json:"lastName"`
	Name              string            `json:"name"`
	PreferredUsername string            `json:"preferred_username"`
	Locale            string            `json:"locale"`
	State             model.UserState   `json:"state"`
	Active            *bool             `json:"active"`
	Status            json.RawMessage   `json:"status"`
	IdentityMappings  json.RawMessage   `json:"identity_mappings"`
	Password          string            `json:"password"`
	Description       string            `json:"description"`
	Labels            map[string]string `json:"labels"`
	Metadata          json.RawMessage   `json:"metadata"`
}

// userDocumentItem is a user of the configuration document: no
// credentials, no live or derived fields.
type userDocumentItem struct {
	ID                string            `json:"id"`
	Subject           string            `json:"subject"`
	Email             string            `json:"email"`
	EmailVerified     bool              `json:"email_verified"`
	GivenName         string            `json:"given_name"`
	FamilyName        string            `json:"family_name"`
	PreferredUsername string            `json:"preferred_username"`
	Locale            string            `json:"locale"`
	State             model.UserState   `json:"state"`
	Description       string            `json:"description"`
	Labels            map[string]string `json:"labels"`
}

// userReadOnly are the GET fields a PUT may send back unchanged.
var userReadOnly = []string{"name", "identity_mappings"}

// renderUser is a user's GET body.
func renderUser(t *store.Typed[model.UserSpec], mappings []*store.Typed[model.IdentityMappingSpec], lastActive *time.Time) userBody {
	sp := &t.Spec
	out := userBody{
		ID: t.Meta.ID, TenantID: t.Meta.TenantID, Subject: sp.Subject, Email: sp.Email, EmailVerified: sp.EmailVerified,
		GivenName: sp.GivenName, FamilyName: sp.FamilyName, Name: sp.DisplayName(), PreferredUsername: sp.PreferredUsername,
		Locale: sp.Locale, State: sp.State, Active: sp.State == model.UserActive, Status: userStatus{LastActive: lastActive},
		IdentityMappings: make([]userMappingBody, 0, len(mappings)), Description: t.Meta.Description,
		Labels: labelsOrEmpty(t.Meta.Labels), Metadata: metadataOf(&t.Meta),
	}
	for _, m := range mappings {
		out.IdentityMappings = append(out.IdentityMappings, renderUserMapping(m))
	}
	return out
}

func renderUserMapping(m *store.Typed[model.IdentityMappingSpec]) userMappingBody {
	return userMappingBody{ID: m.Meta.ID, IdentityProviderID: m.Spec.IdentityProviderID, ExternalSubject: m.Spec.ExternalSubject}
}

// loadUser renders a user read from rd with its mappings and (live
// status: rt nil leaves it out) its last activity.
func (s *Server) loadUser(ctx context.Context, rd store.Reader, withStatus bool, t *store.Typed[model.UserSpec]) (userBody, error) {
	var mappings []*store.Typed[model.IdentityMappingSpec]
	if t.Meta.DeletedAt == nil {
		var err error
		if mappings, err = directory.Mappings(ctx, rd, t.Meta.TenantID, t.Meta.ID); err != nil {
			return userBody{}, err
		}
	}
	var last *time.Time
	if withStatus && t.Meta.DeletedAt == nil {
		var err error
		if last, err = directory.LastActive(ctx, s.store, t.Meta.TenantID, t.Meta.ID); err != nil {
			return userBody{}, err
		}
	}
	return renderUser(t, mappings, last), nil
}

// userCanonical is the users' resource.Kind.Canonical: the spec without
// what the configuration document does not carry (credentials), so that
// an import recognises an unchanged user.
func userCanonical(raw json.RawMessage) ([]byte, error) {
	var spec model.UserSpec
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &spec); err != nil {
			return nil, err
		}
	}
	spec.PasswordHash, spec.TOTPSeed, spec.TOTPConfirmed, spec.CredentialEpoch = "", "", false, 0
	return json.Marshal(spec)
}

// addUserKinds registers users and their internal markers: the subject
// marker (model.KindUserSubject) and identity mappings
// (model.KindIdentityMapping), both children of their user (parent_id),
// found through the store's parent index and deleted with the user by
// its onRemove (not by scheme references, which would scan every marker
// of the tenant on each delete).
func addUserKinds(sch *resource.Scheme) {
	sch.MustRegister(&resource.Kind{Name: model.KindUserSubject, Singular: "user subject", Internal: true})
	sch.MustRegister(&resource.Kind{Name: model.KindIdentityMapping, Singular: "identity mapping", Internal: true})
	sch.MustRegister(&resource.Kind{
		Name: model.KindUser, Singular: "user", SoftDelete: true, Exported: true, Canonical: userCanonical,
		API: &kindAPI{
			param: "uid", readOnly: userReadOnly, nameField: "email",
			current: func(s *Server, c *gin.Context, tid, id string) (any, int64, error) {
				ctx := c.Request.Context()
				t, err := directory.Users.Get(ctx, s.store, tid, id)
				if err != nil {
					return nil, 0, err
				}
				body, err := s.loadUser(ctx, s.store, false, t)
				return body, t.Meta.Revision, err
			},
			list: (*Server).listUsers, get: (*Server).getUser, create: (*Server).createUser, put: (*Server).updateUser,
			onRemove: (*Server).removeUser, afterDelete: (*Server).afterUserRemoved,
			routes: func(s *Server, _, adm *gin.RouterGroup) {
				adm.PUT("/users/:uid/state", s.putUserState)
				adm.POST("/users/:uid/restore", s.restoreUser)
				adm.POST("/users/:uid/recover", s.recoverUser)
				adm.PUT("/users/:uid/reset-mfa", s.resetUserMFA)
				adm.POST("/users/:uid/mappings", s.addUserMapping)
				adm.DELETE("/users/:uid/mappings/:mid", s.deleteUserMapping)
				adm.GET("/users/mapping/:idp/:external_subject", s.userByMapping)
			},
			export: exportUser, importItem: importUser, importWrite: (*Server).importUserWrite,
		},
	})
}

// userNameAlias picks given_name (or family_name) from the field and
// the seed's aliases: they must agree when several are given.
func userNameAlias(errs *field.ErrorList, canonical string, values ...[2]string) string {
	out, from := "", ""
	for _, v := range values {
		if v[1] == "" {
			continue
		}
		if out != "" && v[1] != out {
			errs.Add(field.Invalid(field.NewPath(v[0]), "names another value than %s; give one of them", from))
			continue
		}
		out, from = v[1], v[0]
	}
	*errs = append(*errs, textErrors(canonical, out, false, maxUserText)...)
	return out
}

// userEmailErrors checks an email address: one addr-spec, no display
// name, at most 254 characters.
func userEmailErrors(email string) field.ErrorList {
	p := field.NewPath("email")
	if strings.TrimSpace(email) == "" {
		return field.ErrorList{field.Required(p)}
	}
	if len(email) > maxUserEmail {
		return field.ErrorList{field.Invalid(p, "must be at most %d characters", maxUserEmail)}
	}
	trimmed := strings.TrimSpace(email)
	a, err := mail.ParseAddress(trimmed)
	if err != nil || a.Address != trimmed || a.Name != "" || strings.ContainsAny(trimmed, " \t\r\n") {
		return field.ErrorList{field.Invalid(p, "%q is not an email address (local-part@domain, without a display name)", email)}
	}
	return nil
}

// printableErrors refuses control characters in a text field.
func printableErrors(name, v string) field.ErrorList {
	if strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return field.ErrorList{field.Invalid(field.NewPath(name), "must not contain control characters")}
	}
	return nil
}

// userInput is a validated create or PUT body.
type userInput struct {
	meta store.Object
	spec model.UserSpec
	// state and active as given ("" and nil: not given).
	state  model.UserState
	active *bool
	// passwordHash is the new password's hash ("" none given).
	passwordHash string
}

// validate checks a body (tid: the path's tenant; create: a create,
// where the read-only fields must be absent) and hashes its password.
func (r *userRequest) validate(tid string, create bool) (*userInput, *Error) {
	var errs field.ErrorList
	if apiErr := tenantMatch(r.TenantID, tid); apiErr != nil {
		errs.Extend(apiErr.Fields())
	}
	errs.Extend(userEmailErrors(r.Email))
	given := userNameAlias(&errs, "given_name", [2]string{"given_name", r.GivenName}, [2]string{"firstname", r.FirstnameLower}, [2]string{"firstName", r.FirstNameCamel})
	family := userNameAlias(&errs, "family_name", [2]string{"family_name", r.FamilyName}, [2]string{"lastname", r.LastnameLower}, [2]string{"lastName", r.LastNameCamel})
	for _, f := range []struct{ name, v string }{{"given_name", given}, {"family_name", family}, {"preferred_username", r.PreferredUsername}, {"subject", r.Subject}} {
		errs.Extend(printableErrors(f.name, f.v))
	}
	errs.Extend(textErrors("preferred_username", r.PreferredUsername, false, maxUserText))
	errs.Extend(textErrors("subject", r.Subject, false, maxUserText))
	if r.Subject != "" && strings.TrimSpace(r.Subject) != r.Subject {
		errs.Add(field.Invalid(field.NewPath("subject"), "must not begin or end with spaces"))
	}
	if r.Locale != "" && (len(r.Locale) > 35 || !userLocalePattern.MatchString(r.Locale)) {
		errs.Add(field.Invalid(field.NewPath("locale"), "%q is not a language tag (such as en, fr or pt-BR)", r.Locale))
	}
	if r.State != "" && !r.State.Valid() {
		errs.Add(field.Invalid(field.NewPath("state"), "must be active, pending or suspended, not %q", r.State))
	}
	if r.State != "" && r.Active != nil && *r.Active != (r.State == model.UserActive) && create {
		errs.Add(field.Invalid(field.NewPath("active"), "contradicts state %q; give one of them", r.State))
	}
	if r.Password != "" {
		switch n := utf8.RuneCountInString(r.Password); {
		case !utf8.ValidString(r.Password):
			errs.Add(field.Invalid(field.NewPath("password"), "must be valid UTF-8"))
		case n < minUserPassword:
			errs.Add(field.Invalid(field.NewPath("password"), "must be at least %d characters", minUserPassword))
		case len(r.Password) > passwords.MaxPasswordBytes:
			errs.Add(field.Invalid(field.NewPath("password"), "must be at most %d bytes", passwords.MaxPasswordBytes))
		}
	}
	errs.Extend(textErrors("description", r.Description, false, 4096))
	errs.Extend(labelErrors(r.Labels))
	spec := model.UserSpec{
		Subject: r.Subject, Email: strings.TrimSpace(r.Email), EmailVerified: r.EmailVerified, GivenName: given, FamilyName: family,
		PreferredUsername: r.PreferredUsername, Locale: r.Locale, State: r.State,
	}
	if create {
		if r.Name != "" && r.Name != spec.DisplayName() {
			errs.Add(field.ReadOnly(field.NewPath("name"), "is read-only: given_name and family_name make it"))
		}
		if m := strings.TrimSpace(string(r.IdentityMappings)); m != "" && m != "null" && m != "[]" {
			errs.Add(field.ReadOnly(field.NewPath("identity_mappings"), "is read-only: add mappings with POST /api/admin/{tid}/users/{uid}/mappings"))
		}
	}
	if len(errs) > 0 {
		return nil, fieldErrors(errs)
	}
	in := &userInput{meta: store.Object{Description: r.Description, Labels: r.Labels}, spec: spec, state: r.State, active: r.Active}
	if r.Password != "" {
		h, err := passwords.Hash(r.Password)
		if err != nil {
			return nil, internalError(err)
		}
		in.passwordHash = h
	}
	return in, nil
}

// createUser answers POST /users.
func (s *Server) createUser(c *gin.Context) { s.createUserThen(c, nil) }

// createUserThen is createUser with then (when set) run in the create's
// transaction after the user is written (POST /projects/{pid}/users
// assigns it to the project there).
func (s *Server) createUserThen(c *gin.Context, then func(ctx context.Context, tx store.Tx, t *store.Typed[model.UserSpec]) error) {
	tid := tenantID(c)
	var req userRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	id, idErr := newObjectID("id", req.ID)
	if idErr == nil && id == reservedUserID {
		idErr = fieldError("id", "%q is reserved (GET /users/mapping/… is the mapping lookup); choose another id", id)
	}
	in, apiErr := req.validate(tid, true)
	if apiErr = collect(idErr, apiErr); apiErr != nil {
		abort(c, apiErr)
		return
	}
	spec := in.spec
	switch {
	case spec.State == "" && in.active != nil && !*in.active:
		spec.State = model.UserSuspended
	case spec.State == "":
		spec.State = model.UserActive
	}
	spec.PasswordHash = in.passwordHash
	t := &store.Typed[model.UserSpec]{Meta: in.meta, Spec: spec}
	t.Meta.TenantID, t.Meta.ID, t.Meta.CreatedBy = tid, id, actor(c)
	if !s.write(c, "user", id, func(ctx context.Context, tx store.Tx) error {
		if err := directory.CreateUser(ctx, tx, t); err != nil {
			return userWriteError(err, &t.Spec)
		}
		if err := record(ctx, tx, c, tid, "create", model.KindUser, id); err != nil {
			return err
		}
		if then != nil {
			return then(ctx, tx, t)
		}
		return nil
	}) {
		return
	}
	s.respondUser(c, http.StatusCreated, t)
}

// respondUser answers with the user as GET renders it.
func (s *Server) respondUser(c *gin.Context, status int, t *store.Typed[model.UserSpec]) {
	body, err := s.loadUser(c.Request.Context(), s.store, true, t)
	if err != nil {
		fail(c, err, "user", t.Meta.ID)
		return
	}
	respondObject(c, status, t.Meta.Revision, body)
}

// userWriteError maps the directory's uniqueness errors to a 409 naming
// the field.
func userWriteError(err error, spec *model.UserSpec) error {
	switch {
	case errors.Is(err, directory.ErrEmailTaken):
		return userConflict("email", spec.Email, "another user has this email")
	case errors.Is(err, directory.ErrSubjectTaken):
		return userConflict("subject", spec.Subject, "another user has this subject")
	case errors.Is(err, directory.ErrMappingTaken):
		return userConflict("external_subject", "", "this external identity is mapped to a user already")
	}
	return err
}

func userConflict(fieldName, value, reason string) *Error {
	msg := fmt.Sprintf("%s: %s", fieldName, reason)
	if value != "" {
		msg = fmt.Sprintf("%s: %s (%q)", fieldName, reason, value)
	}
	return newError(http.StatusConflict, httpapi.CodeAlreadyExists, msg, map[string]any{"field": fieldName, "reason": reason, "kind": "user"})
}

// getUser answers GET /users/{uid}.
func (s *Server) getUser(c *gin.Context) {
	id, apiErr := objectIDParam(c, "uid")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	t, err := directory.Users.Get(c.Request.Context(), s.store, tenantID(c), id)
	if err != nil {
		fail(c, err, "user", id)
		return
	}
	s.respondUser(c, http.StatusOK, t)
}

// userListQuery are the query parameters of GET /users.
var userListQuery = []string{"limit", "after", "email", "ids", "state", "include_deleted"}

// listUsers answers GET /users: one page of the users the filters (AND)
// select, in id order.
func (s *Server) listUsers(c *gin.Context) {
	if apiErr := httpapi.KnownQuery(c, userListQuery...); apiErr != nil {
		abort(c, apiErr)
		return
	}
	limit, after, apiErr := page(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	var f directory.UserFilter
	if f.IncludeDeleted, apiErr = boolQuery(c, "include_deleted"); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if v, ok := c.GetQuery("email"); ok {
		if strings.TrimSpace(v) == "" || len(v) > maxUserEmail {
			abort(c, fieldError("email", "must be an email address (at most %d characters)", maxUserEmail))
			return
		}
		f.Email = model.NormalizeEmail(v)
	}
	if v, ok := c.GetQuery("state"); ok {
		if f.State = model.UserState(v); !f.State.Valid() {
			abort(c, fieldError("state", "must be active, pending or suspended, not %q", v))
			return
		}
	}
	if v, ok := c.GetQuery("ids"); ok {
		for _, id := range strings.Split(v, ",") {
			id = strings.TrimSpace(id)
			if !model.ValidObjectID(id) {
				abort(c, fieldError("ids", "%q is not a user id (%s); give ids separated by commas", id, model.ObjectIDRule))
				return
			}
			f.IDs = append(f.IDs, id)
		}
		if len(f.IDs) > maxUserIDsFilter {
			abort(c, fieldError("ids", "at most %d ids are allowed (got %d)", maxUserIDsFilter, len(f.IDs)))
			return
		}
	}
	tid := tenantID(c)
	var out []userBody
	var pg *store.Page
	err := s.store.View(c.Request.Context(), func(ctx context.Context, rd store.Reader) error {
		users, p, err := directory.ListUsers(ctx, rd, tid, f, limit, after)
		if err != nil {
			return err
		}
		pg, out = p, make([]userBody, 0, len(users))
		for _, u := range users {
			body, err := s.loadUser(ctx, rd, true, u)
			if err != nil {
				return err
			}
			out = append(out, body)
		}
		return nil
	})
	if err != nil {
		abort(c, cursorError(err, "user"))
		return
	}
	c.JSON(http.StatusOK, gin.H{"users": out, "total": pg.Total, "next": pg.Next})
}

// nextUserState is the state a PUT or PATCH asks for, from the stored
// state cur: state and active both say it, and the one that differs from
// cur wins; when both differ they must agree. Neither given: unchanged.
func nextUserState(cur model.UserState, state model.UserState, active *bool) (model.UserState, *Error) {
	stateChanged := state != "" && state != cur
	activeChanged := active != nil && *active != (cur == model.UserActive)
	switch {
	case stateChanged && activeChanged && (state == model.UserActive) != *active:
		return "", fieldError("active", "contradicts state %q; give one of them", state)
	case stateChanged:
		return state, nil
	case activeChanged && *active:
		return model.UserActive, nil
	case activeChanged:
		return model.UserSuspended, nil
	}
	return cur, nil
}

// revokes reports whether moving a user from state from to state to
// revokes its tokens: whenever it stops being active.
func revokes(from, to model.UserState) bool {
	return from == model.UserActive && to != model.UserActive
}

// updateUser answers PUT /users/{uid} (and PATCH, through patchObject):
// the body replaces the user's profile; password, when given, replaces
// its password (its sessions end); state and active as nextUserState
// says; the credentials, mappings and TOTP enrolment stay.
func (s *Server) updateUser(c *gin.Context) {
	tid := tenantID(c)
	id, apiErr := objectIDParam(c, "uid")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	var req userRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if req.ID != "" && req.ID != id {
		abort(c, fieldError("id", "does not match the id in the path; ids cannot be changed"))
		return
	}
	in, apiErr := req.validate(tid, false)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	s.changeUser(c, id, "update", http.StatusOK, func(ctx context.Context, tx store.Tx, t *store.Typed[model.UserSpec]) (bool, error) {
		old := t.Spec
		state, apiErr := nextUserState(old.State, in.state, in.active)
		if apiErr != nil {
			return false, apiErr
		}
		spec := in.spec
		spec.State = state
		if spec.Subject == "" {
			spec.Subject = old.Subject
		}
		spec.PasswordHash, spec.TOTPSeed, spec.TOTPConfirmed, spec.CredentialEpoch = old.PasswordHash, old.TOTPSeed, old.TOTPConfirmed, old.CredentialEpoch
		if in.passwordHash != "" {
			spec.PasswordHash = in.passwordHash
			spec.CredentialEpoch++
		}
		name := model.NormalizeEmail(spec.Email)
		if name != t.Meta.Name {
			if o, err := tx.GetByName(ctx, model.KindUser, tid, name); err == nil && o.ID != id {
				return false, userConflict("email", spec.Email, "another user has this email")
			} else if err != nil && !errors.Is(err, store.ErrNotFound) {
				return false, err
			}
		}
		if spec.Subject != old.Subject {
			if err := directory.ChangeSubject(ctx, tx, tid, id, spec.Subject); err != nil {
				return false, userWriteError(err, &spec)
			}
		}
		t.Spec = spec
		t.Meta.Name, t.Meta.Description, t.Meta.Labels = name, in.meta.Description, in.meta.Labels
		// A new password ends what the old one obtained, as a recovery
		// does: whoever held it keeps no token.
		return revokes(old.State, state) || in.passwordHash != "", nil
	})
}

// changeUser runs change on the live user uid in one write (If-Match
// honoured) recorded as action, revoking the user's tokens in it when
// change says so (and deleting its refresh tokens once committed), and
// answers status with the user (http.StatusOK without a body: status
// -200).
func (s *Server) changeUser(c *gin.Context, id, action string, status int, change func(ctx context.Context, tx store.Tx, t *store.Typed[model.UserSpec]) (revoke bool, err error)) {
	tid := tenantID(c)
	expect, apiErr := ifMatch(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	var t *store.Typed[model.UserSpec]
	var revoke bool
	if !s.write(c, "user", id, func(ctx context.Context, tx store.Tx) error {
		var err error
		if t, err = directory.Users.Get(ctx, tx, tid, id); err != nil {
			return err
		}
		if err := checkRevision(&t.Meta, expect); err != nil {
			return err
		}
		if revoke, err = change(ctx, tx, t); err != nil {
			return err
		}
		t.Meta.UpdatedBy = actor(c)
		if err := directory.Users.Update(ctx, tx, t, expect); err != nil {
			return err
		}
		if revoke {
			if err := s.revokeUserTokens(ctx, tx, tid, id); err != nil {
				return err
			}
		}
		return record(ctx, tx, c, tid, action, model.KindUser, id)
	}) {
		return
	}
	if revoke {
		s.deleteUserRefreshTokens(c.Request.Context(), tid, id)
	}
	if status < 0 {
		c.Header("ETag", etag(t.Meta.Revision))
		c.Status(-status)
		return
	}
	s.respondUser(c, status, t)
}

// revokeUserTokens revokes, in tx, every token the tenant's servers
// issued for user uid before now (a not-before revocation at each
// server, until the longest lifetime of its tokens).
func (s *Server) revokeUserTokens(ctx context.Context, tx store.Tx, tid, uid string) error {
	servers, err := store.Repo[model.ServerSpec]{Kind: model.KindServer}.ListAll(ctx, tx, store.Query{TenantID: tid})
	if err != nil {
		return fmt.Errorf("servers of tenant %q: %w", tid, err)
	}
	now := time.Now()
	for _, srv := range servers {
		ttl := max(srv.Spec.AccessTokenTTL.D(), srv.Spec.IDTokenTTL.D(), srv.Spec.RefreshTokenTTL.D())
		if ttl <= 0 {
			ttl = 720 * time.Hour
		}
		if err := grants.RevokeSubject(ctx, tx, tid, model.IssuerURL(s.public, tid, srv.Meta.ID), uid, "", now, now.Add(ttl)); err != nil {
			return fmt.Errorf("revoke the tokens of user %q: %w", uid, err)
		}
	}
	return nil
}

// deleteUserRefreshTokens deletes user uid's refresh tokens (after the
// revocation committed; the revocation refuses their access tokens
// already). A failure is logged: the login's refresh checks the user's
// state and credentials too.
func (s *Server) deleteUserRefreshTokens(ctx context.Context, tid, uid string) {
	if _, err := grants.NewRecords(s.store, nil).DeleteSubjectRefreshTokens(ctx, tid, grants.SubjectUser, uid); err != nil {
		s.log.Warn("delete the refresh tokens of a user", "tenant", tid, "user", uid, "error", err)
	}
}

// removeUser is the users' onRemove: in the delete's transaction, the
// user's subject marker, identity mappings and group and project
// memberships go, and its tokens are revoked at every server.
func (s *Server) removeUser(ctx context.Context, tx store.Tx, o *store.Object) error {
	if err := directory.ReleaseUser(ctx, tx, o.TenantID, o.ID); err != nil {
		return err
	}
	// The user leaves its groups and projects (groups.go).
	if err := removePrincipalMemberships(ctx, tx, o.TenantID, model.PrincipalKey(model.PrincipalUser, o.ID)); err != nil {
		return err
	}
	return s.revokeUserTokens(ctx, tx, o.TenantID, o.ID)
}

// afterUserRemoved is the users' afterDelete: their refresh tokens and
// activity record go.
func (s *Server) afterUserRemoved(ctx context.Context, tid, uid string) {
	s.deleteUserRefreshTokens(ctx, tid, uid)
	if err := s.store.DeleteState(ctx, directory.ActivityStateKind, tid, uid); err != nil {
		s.log.Warn("delete the activity of a user", "tenant", tid, "user", uid, "error", err)
	}
}

// userStateRequest is the body of PUT /users/{uid}/state.
type userStateRequest struct {
	State model.UserState `json:"state"`
}

// putUserState answers PUT /users/{uid}/state {state}.
func (s *Server) putUserState(c *gin.Context) {
	id, apiErr := objectIDParam(c, "uid")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	var req userStateRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	switch {
	case req.State == "":
		abort(c, missingField("state"))
		return
	case !req.State.Valid():
		abort(c, fieldError("state", "must be active, pending or suspended, not %q", req.State))
		return
	}
	s.changeUser(c, id, "update", http.StatusOK, func(_ context.Context, _ store.Tx, t *store.Typed[model.UserSpec]) (bool, error) {
		old := t.Spec.State
		t.Spec.State = req.State
		return revokes(old, req.State), nil
	})
}

// resetUserMFA answers PUT /users/{uid}/reset-mfa: the TOTP enrolment is
// cleared (the next login enrols again) and the credential epoch moves
// (sessions end); 200 without a body (seed 002).
func (s *Server) resetUserMFA(c *gin.Context) {
	id, apiErr := objectIDParam(c, "uid")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	if apiErr := noBody(c); apiErr != nil {
		abort(c, apiErr)
		return
	}
	s.changeUser(c, id, "reset-mfa", -http.StatusOK, func(_ context.Context, _ store.Tx, t *store.Typed[model.UserSpec]) (bool, error) {
		t.Spec.TOTPSeed, t.Spec.TOTPConfirmed = "", false
		t.Spec.CredentialEpoch++
		// The tokens obtained with the old second factor end with it.
		return true, nil
	})
}

// noBody accepts an action's empty body, or {} (a JSON object without
// members: anything else is refused as decodeJSON refuses it).
func noBody(c *gin.Context) *Error {
	if c.Request.ContentLength == 0 {
		return nil
	}
	var none struct{}
	return decodeJSON(c, &none)
}

// restoreUser answers POST /users/{uid}/restore: the most recently
// deleted user with that id, deleted less than directory.RestoreWindow
// ago, is live again (201); 409 when its id, email or subject is taken
// meanwhile.
func (s *Server) restoreUser(c *gin.Context) {
	tid := tenantID(c)
	id, apiErr := objectIDParam(c, "uid")
	if apiErr == nil {
		apiErr = noBody(c)
	}
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	var t *store.Typed[model.UserSpec]
	if !s.write(c, "user", id, func(ctx context.Context, tx store.Tx) error {
		d, err := directory.DeletedUser(ctx, tx, tid, id)
		if err != nil {
			if _, live := directory.Users.Get(ctx, tx, tid, id); live == nil {
				return newError(http.StatusConflict, httpapi.CodeConflict, fmt.Sprintf("user %q is not deleted", id),
					map[string]any{"kind": "user", "id": id, "reason": "not deleted"})
			}
			return err
		}
		if time.Since(*d.Meta.DeletedAt) > directory.RestoreWindow {
			return newError(http.StatusNotFound, httpapi.CodeNotFound,
				fmt.Sprintf("user %q was deleted more than %s ago and cannot be restored", id, directory.RestoreWindow),
				map[string]any{"kind": "user", "id": id})
		}
		switch t, err = directory.RestoreUser(ctx, tx, d, actor(c)); {
		case errors.Is(err, directory.ErrRestoreIDTaken):
			return newError(http.StatusConflict, httpapi.CodeConflict, fmt.Sprintf("user %q is not deleted", id),
				map[string]any{"kind": "user", "id": id, "reason": "not deleted"})
		case err != nil:
			return userWriteError(err, &d.Spec)
		}
		return record(ctx, tx, c, tid, "restore", model.KindUser, id)
	}) {
		return
	}
	s.respondUser(c, http.StatusCreated, t)
}

// userRecovery is the answer of POST /users/{uid}/recover.
type userRecovery struct {
	Link       string    `json:"link"`
	Expiration time.Time `json:"expiration"`
}

// recoverUser answers POST /users/{uid}/recover: a one-time recovery
// link (directory.CreateRecovery), shown this once, where the user sets
// a new password and enrols TOTP again (the login serves it). Only its
// key's hash is stored. Audited as "recover".
func (s *Server) recoverUser(c *gin.Context) {
	tid := tenantID(c)
	id, apiErr := objectIDParam(c, "uid")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	if apiErr := noBody(c); apiErr != nil {
		abort(c, apiErr)
		return
	}
	ctx := c.Request.Context()
	u, err := directory.Users.Get(ctx, s.store, tid, id)
	if err != nil {
		fail(c, err, "user", id)
		return
	}
	// The runtime write comes first (no runtime write may run inside a
	// configuration transaction); a failed audit takes it back.
	key, expires, err := directory.CreateRecovery(ctx, s.store, tid, id, directory.CredentialVersion(&u.Spec), time.Now())
	if err != nil {
		fail(c, err, "user", id)
		return
	}
	if !s.write(c, "user", id, func(ctx context.Context, tx store.Tx) error {
		if _, err := directory.Users.Get(ctx, tx, tid, id); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "recover", model.KindUser, id)
	}) {
		if err := s.store.DeleteState(context.WithoutCancel(ctx), directory.RecoveryStateKind, tid, directory.RecoveryKeyHash(key)); err != nil {
			s.log.Warn("take back a recovery link", "tenant", tid, "user", id, "error", err)
		}
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusCreated, userRecovery{Link: directory.RecoveryLink(s.public, tid, key), Expiration: expires})
}

// userMappingRequest is the body of POST /users/{uid}/mappings.
type userMappingRequest struct {
	IdentityProviderID string `json:"identity_provider_id"`
	ExternalSubject    string `json:"external_subject"`
}

func (r *userMappingRequest) validate() *Error {
	var errs field.ErrorList
	switch {
	case r.IdentityProviderID == "":
		errs.Add(field.Required(field.NewPath("identity_provider_id")))
	case !model.ValidObjectID(r.IdentityProviderID):
		errs.Add(field.Invalid(field.NewPath("identity_provider_id"), "invalid id %q (%s)", r.IdentityProviderID, model.ObjectIDRule))
	}
	errs.Extend(externalSubjectErrors(r.ExternalSubject))
	return fieldErrors(errs)
}

// externalSubjectErrors checks an upstream subject: 1–1024 bytes of
// valid UTF-8 without control characters (opaque otherwise, such as
// Auth0's "google-oauth2|1234").
func externalSubjectErrors(sub string) field.ErrorList {
	p := field.NewPath("external_subject")
	switch {
	case sub == "":
		return field.ErrorList{field.Required(p)}
	case len(sub) > maxExternalSubjet:
		return field.ErrorList{field.Invalid(p, "must be at most %d bytes", maxExternalSubjet)}
	case !utf8.ValidString(sub) || strings.IndexFunc(sub, unicode.IsControl) >= 0:
		return field.ErrorList{field.Invalid(p, "must be valid UTF-8 without control characters")}
	}
	return nil
}

// identityProviderExists reports whether idp is an identity provider of
// the tenant or of the system tenant (usable by every tenant).
func identityProviderExists(ctx context.Context, rd store.Reader, tid, idp string) (bool, error) {
	for _, owner := range []string{tid, model.SystemTenantID} {
		_, err := rd.Get(ctx, model.KindIdentityProvider, owner, idp)
		switch {
		case err == nil:
			return true, nil
		case !errors.Is(err, store.ErrNotFound):
			return false, err
		}
	}
	return false, nil
}

// addUserMapping answers POST /users/{uid}/mappings: the external
// subject of an identity provider (of the tenant or the system tenant)
// is mapped to the user (201 with the mapping). One mapping per identity
// provider per user, and an external identity maps to one user: 409
// otherwise.
func (s *Server) addUserMapping(c *gin.Context) {
	tid := tenantID(c)
	uid, apiErr := objectIDParam(c, "uid")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	var req userMappingRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if apiErr := req.validate(); apiErr != nil {
		abort(c, apiErr)
		return
	}
	var m *store.Typed[model.IdentityMappingSpec]
	if !s.write(c, "user", uid, func(ctx context.Context, tx store.Tx) error {
		if _, err := directory.Users.Get(ctx, tx, tid, uid); err != nil {
			return err
		}
		ok, err := identityProviderExists(ctx, tx, tid, req.IdentityProviderID)
		if err != nil {
			return err
		}
		if !ok {
			return unknownReference("identity_provider_id", "identity provider", req.IdentityProviderID)
		}
		have, err := directory.Mappings(ctx, tx, tid, uid)
		if err != nil {
			return err
		}
		for _, h := range have {
			if h.Spec.IdentityProviderID == req.IdentityProviderID {
				return newError(http.StatusConflict, httpapi.CodeAlreadyExists,
					fmt.Sprintf("identity_provider_id: user %q has a mapping of identity provider %q already (mapping %q)", uid, req.IdentityProviderID, h.Meta.ID),
					map[string]any{"field": "identity_provider_id", "reason": "one mapping per identity provider", "kind": "identity mapping", "id": h.Meta.ID})
			}
		}
		if m, err = directory.AddMapping(ctx, tx, tid, uid, req.IdentityProviderID, req.ExternalSubject); err != nil {
			return userWriteError(err, nil)
		}
		return record(ctx, tx, c, tid, "create", model.KindIdentityMapping, m.Meta.ID)
	}) {
		return
	}
	respondObject(c, http.StatusCreated, m.Meta.Revision, renderUserMapping(m))
}

// deleteUserMapping answers DELETE /users/{uid}/mappings/{mid}.
func (s *Server) deleteUserMapping(c *gin.Context) {
	tid := tenantID(c)
	uid, apiErr := objectIDParam(c, "uid")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	mid, apiErr := objectIDParam(c, "mid")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	if !s.write(c, "identity mapping", mid, func(ctx context.Context, tx store.Tx) error {
		m, err := directory.IdentityMappings.Get(ctx, tx, tid, mid)
		if err != nil {
			return err
		}
		if m.Meta.ParentID != uid {
			return fmt.Errorf("identity mapping %q of user %q: %w", mid, uid, store.ErrNotFound)
		}
		if _, err := tx.Delete(ctx, model.KindIdentityMapping, tid, mid, 0, false); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "delete", model.KindIdentityMapping, mid)
	}) {
		return
	}
	c.Status(http.StatusNoContent)
}

// userByMapping answers GET /users/mapping/{idp}/{external_subject}: the
// user the external identity maps to.
func (s *Server) userByMapping(c *gin.Context) {
	idp, apiErr := objectIDParam(c, "idp")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	sub := c.Param("external_subject")
	if errs := externalSubjectErrors(sub); len(errs) > 0 {
		abort(c, fieldErrors(errs))
		return
	}
	t, err := directory.UserByMapping(c.Request.Context(), s.store, tenantID(c), idp, sub)
	if err != nil {
		fail(c, err, "user", idp+"|"+sub)
		return
	}
	s.respondUser(c, http.StatusOK, t)
}

// exportUser is a user of the configuration document: its profile,
// without credentials, mappings or live status.
func exportUser(o *store.Object) (any, error) {
	var spec model.UserSpec
	if len(o.Spec) > 0 {
		if err := json.Unmarshal(o.Spec, &spec); err != nil {
			return nil, fmt.Errorf("decode user %q: %w", o.ID, err)
		}
	}
	return userDocumentItem{
		ID: o.ID, Subject: spec.Subject, Email: spec.Email, EmailVerified: spec.EmailVerified, GivenName: spec.GivenName,
		FamilyName: spec.FamilyName, PreferredUsername: spec.PreferredUsername, Locale: spec.Locale, State: spec.State,
		Description: o.Description, Labels: labelsOrEmpty(o.Labels),
	}, nil
}

// importUser decodes and validates a user of a configuration document.
// Documents carry no passwords: an imported user signs in once it has
// one (a recovery link); a user the import updates keeps its
// credentials (importUserWrite).
func importUser(_ *Server, raw json.RawMessage) (*configObject, *Error) {
	var in userDocumentItem
	if apiErr := decodeConfigItem(raw, &in); apiErr != nil {
		return nil, apiErr
	}
	if apiErr := configID(in.ID); apiErr != nil {
		return nil, apiErr
	}
	if in.ID == reservedUserID {
		return nil, fieldError("id", "%q is reserved; choose another id", in.ID)
	}
	req := userRequest{Subject: in.Subject, Email: in.Email, EmailVerified: in.EmailVerified, GivenName: in.GivenName,
		FamilyName: in.FamilyName, PreferredUsername: in.PreferredUsername, Locale: in.Locale, State: in.State,
		Description: in.Description, Labels: in.Labels}
	v, apiErr := req.validate("", true)
	if apiErr != nil {
		return nil, apiErr
	}
	spec := v.spec
	if spec.State == "" {
		spec.State = model.UserActive
	}
	name := model.NormalizeEmail(spec.Email)
	if spec.Subject == "" {
		spec.Subject = name
	}
	labels := in.Labels
	if len(labels) == 0 {
		labels = nil
	}
	return newConfigObject(model.KindUser, in.ID, name, "", in.Description, labels, spec)
}

// importUserWrite is the users' importWrite: a user the import updates
// keeps its credentials and TOTP enrolment; its subject marker is made
// (create) or moved (a new subject); one the import suspends loses its
// tokens.
func (s *Server) importUserWrite(ctx context.Context, tx store.Tx, tid string, cur, want *store.Object) error {
	var spec model.UserSpec
	if err := json.Unmarshal(want.Spec, &spec); err != nil {
		return fmt.Errorf("decode user %q: %w", want.ID, err)
	}
	if cur == nil {
		// The user is created after this: its subject marker first.
		if err := directory.ChangeSubject(ctx, tx, tid, want.ID, spec.Subject); err != nil {
			return userWriteError(err, &spec)
		}
		return nil
	}
	var old model.UserSpec
	if err := json.Unmarshal(cur.Spec, &old); err != nil {
		return fmt.Errorf("decode user %q: %w", cur.ID, err)
	}
	spec.PasswordHash, spec.TOTPSeed, spec.TOTPConfirmed, spec.CredentialEpoch = old.PasswordHash, old.TOTPSeed, old.TOTPConfirmed, old.CredentialEpoch
	raw, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	want.Spec = raw
	if spec.Subject != old.Subject {
		if err := directory.ChangeSubject(ctx, tx, tid, want.ID, spec.Subject); err != nil {
			return userWriteError(err, &spec)
		}
	}
	if revokes(old.State, spec.State) {
		return s.revokeUserTokens(ctx, tx, tid, want.ID)
	}
	return nil
}
