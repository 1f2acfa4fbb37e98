package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/clientauth"
	"github.com/gatehouse-dev/gatehouse/store"
)

// The directory's lists of the configuration document: service accounts
// (with their client's id and secret hashes), groups (with their members)
// and projects (with their groups and direct members), after users and
// in that order (the scheme's references: groups name users and service
// accounts, projects name groups). What the routes keep as markers —
// group memberships, a project's groups and direct members — is no list
// of its own: an import rebuilds it from the groups and projects, in its
// transaction.

// groupDocumentItem is a group of the configuration document: the group
// body without tenant_id and metadata.
type groupDocumentItem struct {
	ID                string            `json:"id"`
	Name              string            `json:"name"`
	Description       string            `json:"description"`
	UserIDs           []string          `json:"user_ids"`
	ServiceAccountIDs []string          `json:"service_account_ids"`
	RoleIDs           []string          `json:"role_ids"`
	Labels            map[string]string `json:"labels"`
}

func exportGroup(o *store.Object) (any, error) {
	var spec model.GroupSpec
	if err := decodeSpec(o, &spec); err != nil {
		return nil, err
	}
	return groupDocumentItem{ID: o.ID, Name: o.Name, Description: o.Description, UserIDs: nonNilStrings(spec.UserIDs),
		ServiceAccountIDs: nonNilStrings(spec.ServiceAccountIDs), RoleIDs: nonNilStrings(spec.RoleIDs), Labels: labelsOrEmpty(o.Labels)}, nil
}

// configGroupObject validates a document's group with the rules of the
// group routes; its members are the document's references (Refs).
func configGroupObject(in *groupDocumentItem) (*configObject, *Error) {
	if apiErr := configID(in.ID); apiErr != nil {
		return nil, apiErr
	}
	body := groupBody{Name: in.Name, Description: in.Description, UserIDs: in.UserIDs, ServiceAccountIDs: in.ServiceAccountIDs,
		RoleIDs: in.RoleIDs, Labels: in.Labels}
	meta, spec, apiErr := body.validate("")
	if apiErr != nil {
		return nil, apiErr
	}
	return newConfigObject(model.KindGroup, in.ID, meta.Name, "", meta.Description, meta.Labels, spec)
}

// importGroupWrite is the groups' importWrite: the group's membership
// markers follow its members, from those of the group as stored now (a
// user or service account the import deleted has left it already).
func importGroupWrite(_ *Server, ctx context.Context, tx store.Tx, tid string, cur, want *store.Object) error {
	var after model.GroupSpec
	if err := decodeSpec(want, &after); err != nil {
		return err
	}
	var before *model.GroupSpec
	if cur != nil {
		now, err := groupRepo.Get(ctx, tx, tid, want.ID)
		switch {
		case err == nil:
			before = &now.Spec
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
	}
	return syncGroupMarkers(ctx, tx, tid, want.ID, before, &after)
}

// projectMemberItem is a direct member of a project in the document.
type projectMemberItem struct {
	// Type is user or service_account.
	Type string `json:"type"`
	ID   string `json:"id"`
}

// projectDocumentSpec is a project's spec as the document holds it: the
// stored spec and the direct members (markers in the store).
type projectDocumentSpec struct {
	model.ProjectSpec
	Members []projectMemberItem `json:"members,omitempty"`
}

// projectDocumentItem is a project of the configuration document (status
// is always READY and left out).
type projectDocumentItem struct {
	ID          string              `json:"id"`
	Name        string              `json:"name"`
	Description string              `json:"description"`
	GroupIDs    []string            `json:"group_ids"`
	Members     []projectMemberItem `json:"members"`
	Labels      map[string]string   `json:"labels"`
}

// maxProjectMembers bounds a document project's direct members.
const maxProjectMembers = maxGroupMembers

func sortMembers(m []projectMemberItem) {
	slices.SortFunc(m, func(a, b projectMemberItem) int { return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.ID, b.ID)) })
}

// projectDocumentState is the projects' documentState: each project's
// direct members, sorted by type and id, from one listing of the
// tenant's assignments.
func projectDocumentState(ctx context.Context, rd store.Reader, tid string, objs []*store.Object) error {
	if len(objs) == 0 {
		return nil
	}
	ms, err := projectMemberRepo.ListAll(ctx, rd, store.Query{TenantID: tid})
	if err != nil {
		return fmt.Errorf("list the project members: %w", err)
	}
	by := map[string][]projectMemberItem{}
	for _, m := range ms {
		typ, id, ok := model.ParsePrincipalKey(m.Spec.Principal)
		if !ok || typ == model.PrincipalGroup {
			continue
		}
		by[m.Spec.ProjectID] = append(by[m.Spec.ProjectID], projectMemberItem{Type: typ, ID: id})
	}
	for _, o := range objs {
		var spec projectDocumentSpec
		if err := decodeSpec(o, &spec.ProjectSpec); err != nil {
			return err
		}
		spec.Members = by[o.ID]
		sortMembers(spec.Members)
		raw, err := json.Marshal(spec)
		if err != nil {
			return err
		}
		o.Spec = raw
	}
	return nil
}

func exportProject(o *store.Object) (any, error) {
	var spec projectDocumentSpec
	if err := decodeSpec(o, &spec); err != nil {
		return nil, err
	}
	members := spec.Members
	if members == nil {
		members = []projectMemberItem{}
	}
	return projectDocumentItem{ID: o.ID, Name: o.Name, Description: o.Description, GroupIDs: nonNilStrings(spec.GroupIDs),
		Members: members, Labels: labelsOrEmpty(o.Labels)}, nil
}

// configProjectObject validates a document's project with the rules of
// the project routes; its groups (Refs) and members (members[j].id) are
// the document's references.
func configProjectObject(in *projectDocumentItem) (*configObject, *Error) {
	if apiErr := configID(in.ID); apiErr != nil {
		return nil, apiErr
	}
	body := projectBody{Name: in.Name, Description: in.Description, GroupIDs: in.GroupIDs, Labels: in.Labels}
	meta, spec, apiErr := body.validate("")
	var errs field.ErrorList
	if apiErr != nil {
		if errs = apiErr.Fields(); len(errs) == 0 {
			return nil, apiErr
		}
	}
	var refs []configRef
	root := field.NewPath("members")
	if len(in.Members) > maxProjectMembers {
		errs.Add(field.Invalid(root, "at most %d members are allowed (got %d)", maxProjectMembers, len(in.Members)))
	}
	seen := map[projectMemberItem]bool{}
	for j, m := range in.Members {
		p := root.Index(j)
		var kind string
		switch m.Type {
		case model.PrincipalUser:
			kind = model.KindUser
		case model.PrincipalServiceAccount:
			kind = model.KindServiceAccount
		case "":
			errs.Add(field.Required(p.Child("type")))
		default:
			errs.Add(field.Invalid(p.Child("type"), "must be user or service_account, not %q", m.Type))
		}
		switch {
		case m.ID == "":
			errs.Add(field.Required(p.Child("id")))
		case !model.ValidObjectID(m.ID):
			errs.Add(field.Invalid(p.Child("id"), "invalid id %q (%s)", m.ID, model.ObjectIDRule))
		case seen[m]:
			errs.Add(field.Invalid(p, "%s %q is listed twice", m.Type, m.ID))
		case kind != "":
			refs = append(refs, configRef{field: p.Child("id").String(), kind: kind, id: m.ID})
		}
		seen[m] = true
	}
	if len(errs) > 0 {
		return nil, fieldErrors(errs)
	}
	members := slices.Clone(in.Members)
	sortMembers(members)
	o, apiErr := newConfigObject(model.KindProject, in.ID, meta.Name, "", meta.Description, meta.Labels,
		projectDocumentSpec{ProjectSpec: spec, Members: members})
	if o != nil {
		o.refs = refs
	}
	return o, apiErr
}

// importProjectWrite is the projects' importWrite: the project's group
// markers follow its groups (from the project as stored now) and its
// direct assignments become the document's (cur's members are those
// read when the import began, a superset of the assignments left now:
// what the import's deletes removed is gone already); the project is
// stored without them.
func importProjectWrite(_ *Server, ctx context.Context, tx store.Tx, tid string, cur, want *store.Object) error {
	var after, before projectDocumentSpec
	if err := decodeSpec(want, &after); err != nil {
		return err
	}
	if cur != nil {
		if err := decodeSpec(cur, &before); err != nil {
			return err
		}
		now, err := projectRepo.Get(ctx, tx, tid, want.ID)
		switch {
		case err == nil:
			before.GroupIDs = now.Spec.GroupIDs
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
	}
	if err := syncProjectGroups(ctx, tx, tid, want.ID, before.GroupIDs, after.GroupIDs); err != nil {
		return err
	}
	for _, m := range before.Members {
		if !slices.Contains(after.Members, m) {
			if err := deleteMarker(ctx, tx, model.KindProjectMember, tid, projectMemberName(want.ID, model.PrincipalKey(m.Type, m.ID))); err != nil {
				return err
			}
		}
	}
	for _, m := range after.Members {
		if slices.Contains(before.Members, m) {
			continue
		}
		principal := model.PrincipalKey(m.Type, m.ID)
		name := projectMemberName(want.ID, principal)
		pm := &store.Typed[model.ProjectMemberSpec]{
			Meta: store.Object{TenantID: tid, ID: markerID(name), Name: name, ParentID: principal, CreatedBy: writer(want)},
			Spec: model.ProjectMemberSpec{ProjectID: want.ID, Principal: principal},
		}
		if err := projectMemberRepo.Create(ctx, tx, pm); err != nil {
			return fmt.Errorf("assign %s to project %q: %w", principal, want.ID, err)
		}
	}
	raw, err := json.Marshal(after.ProjectSpec)
	if err != nil {
		return err
	}
	want.Spec = raw
	return nil
}

// serviceAccountDocumentSpec is a service account's spec as the document
// holds it: the stored spec and its client's secret hashes.
type serviceAccountDocumentSpec struct {
	model.ServiceAccountSpec
	SecretHash              string     `json:"secret_hash,omitempty"`
	PreviousSecretHash      string     `json:"previous_secret_hash,omitempty"`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
}

// serviceAccountDocumentItem is a service account of the configuration
// document: the account's body (without group_ids: the groups hold its
// memberships) and its client — the id, and the SHA-256 of its secret
// (and, during a rotation's grace period, of the previous one), never a
// secret in clear. An import makes the client with the same id and
// hashes, so the account's secret works in the tenant the document is
// imported into.
type serviceAccountDocumentItem struct {
	ID                      string            `json:"id"`
	Name                    string            `json:"name"`
	Description             string            `json:"description"`
	ContactEmail            string            `json:"contact_email"`
	TokenDuration           json.RawMessage   `json:"token_duration"`
	State                   string            `json:"state"`
	GrantDefaultRoles       *bool             `json:"grant_default_roles"`
	Expiry                  *time.Time        `json:"expiry,omitempty"`
	Labels                  map[string]string `json:"labels"`
	ClientID                string            `json:"client_id"`
	SecretHash              string            `json:"secret_hash"`
	PreviousSecretHash      string            `json:"previous_secret_hash,omitempty"`
	PreviousSecretExpiresAt *time.Time        `json:"previous_secret_expires_at,omitempty"`
}

// serviceAccountDocumentState is the service accounts' documentState:
// each account's client's secret hashes.
func serviceAccountDocumentState(ctx context.Context, rd store.Reader, tid string, objs []*store.Object) error {
	for _, o := range objs {
		var spec serviceAccountDocumentSpec
		if err := decodeSpec(o, &spec.ServiceAccountSpec); err != nil {
			return err
		}
		client, err := oauthClientRepo.Get(ctx, rd, tid, spec.ClientID)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return fmt.Errorf("read the client of service account %q: %w", o.ID, err)
		case client.Spec.ServiceAccountID == o.ID:
			spec.SecretHash = client.Spec.SecretHash
			if client.Spec.PreviousSecretHash != "" {
				spec.PreviousSecretHash, spec.PreviousSecretExpiresAt = client.Spec.PreviousSecretHash, client.Spec.PreviousSecretExpiresAt
			}
		}
		raw, err := json.Marshal(spec)
		if err != nil {
			return err
		}
		o.Spec = raw
	}
	return nil
}

func exportServiceAccount(o *store.Object) (any, error) {
	var spec serviceAccountDocumentSpec
	if err := decodeSpec(o, &spec); err != nil {
		return nil, err
	}
	d, err := json.Marshal(spec.TokenDuration)
	if err != nil {
		return nil, err
	}
	out := serviceAccountDocumentItem{ID: o.ID, Name: o.Name, Description: o.Description, ContactEmail: spec.ContactEmail,
		TokenDuration: d, State: string(spec.State), GrantDefaultRoles: &spec.GrantDefaultRoles, Labels: labelsOrEmpty(o.Labels),
		ClientID: spec.ClientID, SecretHash: spec.SecretHash, PreviousSecretHash: spec.PreviousSecretHash}
	if spec.Expiry != nil {
		at := spec.Expiry.UTC()
		out.Expiry = &at
	}
	if spec.PreviousSecretExpiresAt != nil {
		at := spec.PreviousSecretExpiresAt.UTC()
		out.PreviousSecretExpiresAt = &at
	}
	return out, nil
}

// configServiceAccountObject validates a document's service account with
// the rules of the service account routes (an expiry may be past: the
// account is then expired, as exported); client_id and secret_hash are
// required.
func configServiceAccountObject(in *serviceAccountDocumentItem) (*configObject, *Error) {
	if apiErr := configID(in.ID); apiErr != nil {
		return nil, apiErr
	}
	if in.ID == saMapping {
		return nil, fieldError("id", "%q is reserved (GET …/service-accounts/mapping/{client_id})", saMapping)
	}
	req := serviceAccountRequest{Name: in.Name, Description: in.Description, ContactEmail: in.ContactEmail, TokenDuration: in.TokenDuration,
		State: in.State, GrantDefaultRoles: in.GrantDefaultRoles, Expiry: in.Expiry, Labels: in.Labels}
	meta, spec, apiErr := req.validate("", false)
	var errs field.ErrorList
	if apiErr != nil {
		if errs = apiErr.Fields(); len(errs) == 0 {
			return nil, apiErr
		}
	}
	switch {
	case in.ClientID == "":
		errs.Add(field.Required(field.NewPath("client_id")))
	case !model.ValidObjectID(in.ClientID):
		errs.Add(field.Invalid(field.NewPath("client_id"), "invalid id %q (%s)", in.ClientID, model.ObjectIDRule))
	case in.ClientID == model.ConsoleClientID:
		errs.Add(field.Invalid(field.NewPath("client_id"), "%q is the console's client", in.ClientID))
	}
	switch {
	case in.SecretHash == "":
		errs.Add(field.Required(field.NewPath("secret_hash")))
	case !clientauth.ValidHash(in.SecretHash):
		errs.Add(field.Invalid(field.NewPath("secret_hash"), "must be the SHA-256 of the secret: 64 lowercase hex digits"))
	}
	switch {
	case in.PreviousSecretHash != "" && !clientauth.ValidHash(in.PreviousSecretHash):
		errs.Add(field.Invalid(field.NewPath("previous_secret_hash"), "must be the SHA-256 of the secret: 64 lowercase hex digits"))
	case in.PreviousSecretHash != "" && in.PreviousSecretExpiresAt == nil:
		errs.Add(field.Required(field.NewPath("previous_secret_expires_at")))
	case in.PreviousSecretHash == "" && in.PreviousSecretExpiresAt != nil:
		errs.Add(field.Invalid(field.NewPath("previous_secret_expires_at"), "is for a previous_secret_hash"))
	}
	if len(errs) > 0 {
		return nil, fieldErrors(errs)
	}
	spec.ClientID = in.ClientID
	doc := serviceAccountDocumentSpec{ServiceAccountSpec: spec, SecretHash: in.SecretHash, PreviousSecretHash: in.PreviousSecretHash}
	if in.PreviousSecretExpiresAt != nil {
		at := in.PreviousSecretExpiresAt.UTC()
		doc.PreviousSecretExpiresAt = &at
	}
	return newConfigObject(model.KindServiceAccount, in.ID, meta.Name, "", meta.Description, meta.Labels, doc)
}

// checkConfigServiceAccounts is the service accounts' importCheck: no
// two accounts of a document share a client id. (Whether the id is free
// in the tenant is known only once the import's deletes ran:
// importServiceAccountWrite.)
func checkConfigServiceAccounts(want []*configObject, _ configState, _ bool) *Error {
	seen := map[string]string{}
	for _, o := range want {
		var spec model.ServiceAccountSpec
		if err := json.Unmarshal(o.obj.Spec, &spec); err != nil {
			return internalError(fmt.Errorf("decode service account %q: %w", o.obj.ID, err))
		}
		if prev, dup := seen[spec.ClientID]; dup {
			return fieldError(o.field+".client_id", "client %q is also the client of %s", spec.ClientID, prev)
		}
		seen[spec.ClientID] = o.field
	}
	return nil
}

// importServiceAccountWrite is the service accounts' importWrite: the
// account's client is made (a new account, or a new client_id: the old
// client is deleted) or takes the document's secret hashes, on the
// tenant's default server as the create route makes it. The account's
// tokens are revoked (a not-before of its subject, as the routes do)
// when its client changes, when the secret it had stops working (a new
// secret_hash that does not keep the old one as previous_secret_hash)
// and when the import suspends it. The account is stored without the
// hashes.
func (s *Server) importServiceAccountWrite(ctx context.Context, tx store.Tx, tid string, cur, want *store.Object) error {
	var doc serviceAccountDocumentSpec
	if err := decodeSpec(want, &doc); err != nil {
		return err
	}
	revoke := false
	var client *store.Typed[model.ClientSpec]
	if cur != nil {
		var old model.ServiceAccountSpec
		if err := decodeSpec(cur, &old); err != nil {
			return err
		}
		revoke = old.State == model.ServiceAccountActive && doc.State == model.ServiceAccountSuspended
		c, err := oauthClientRepo.Get(ctx, tx, tid, old.ClientID)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return fmt.Errorf("read the client of service account %q: %w", want.ID, err)
		case c.Spec.ServiceAccountID != want.ID:
		case old.ClientID == doc.ClientID:
			client = c
		default: // a new client: the old one goes, and its tokens
			if _, err := tx.Delete(ctx, model.KindClient, tid, c.Meta.ID, 0, false); err != nil {
				return fmt.Errorf("delete the client of service account %q: %w", want.ID, err)
			}
			revoke = true
		}
	}
	serverID := model.DefaultServerID
	if client == nil {
		switch _, err := tx.Get(ctx, model.KindClient, tid, doc.ClientID); {
		case err == nil:
			return fieldError("client_id", "client %q exists already and is not this service account's; choose another client_id", doc.ClientID)
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		server, err := accountServer(ctx, tx, tid)
		if err != nil {
			return err
		}
		serverID = server.Meta.ID
		client = &store.Typed[model.ClientSpec]{
			Meta: store.Object{TenantID: tid, ID: doc.ClientID, Name: doc.ClientID, ParentID: want.ID, CreatedBy: writer(want),
				Description: fmt.Sprintf("The OAuth client of service account %q, made by Gatehouse; it goes with the service account.", want.ID)},
			Spec: model.ClientSpec{
				Name: "service account " + want.Name, ServerID: server.Meta.ID, SecretHash: doc.SecretHash, System: true,
				PreviousSecretHash: doc.PreviousSecretHash, PreviousSecretExpiresAt: doc.PreviousSecretExpiresAt,
				GrantTypes: []string{model.GrantClientCredentials}, ResponseTypes: []string{},
				TokenEndpointAuthMethod: model.AuthMethodBasic, ClientIDIssuedAt: time.Now().Unix(), ServiceAccountID: want.ID,
			},
		}
		if err := oauthClientRepo.Create(ctx, tx, client); err != nil {
			return fmt.Errorf("create the client of service account %q: %w", want.ID, err)
		}
	} else {
		serverID = client.Spec.ServerID
		was := client.Spec
		if was.SecretHash != doc.SecretHash && doc.PreviousSecretHash != was.SecretHash {
			revoke = true
		}
		if was.SecretHash != doc.SecretHash || was.PreviousSecretHash != doc.PreviousSecretHash ||
			!equalTimes(was.PreviousSecretExpiresAt, doc.PreviousSecretExpiresAt) {
			client.Spec.SecretHash, client.Spec.PreviousSecretHash = doc.SecretHash, doc.PreviousSecretHash
			client.Spec.PreviousSecretExpiresAt = doc.PreviousSecretExpiresAt
			client.Meta.UpdatedBy = writer(want)
			if err := oauthClientRepo.Update(ctx, tx, client, 0); err != nil {
				return fmt.Errorf("update the client of service account %q: %w", want.ID, err)
			}
		}
	}
	if revoke {
		if err := s.revokeAccountTokens(ctx, tx, tid, serverID, want.ID, time.Now()); err != nil {
			return err
		}
	}
	raw, err := json.Marshal(doc.ServiceAccountSpec)
	if err != nil {
		return err
	}
	want.Spec = raw
	return nil
}

func equalTimes(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

// writer is who an import writes an object as (set before importWrite).
func writer(o *store.Object) string {
	if o.UpdatedBy != "" {
		return o.UpdatedBy
	}
	return o.CreatedBy
}

// decodeSpec decodes an object's spec (none: the zero spec).
func decodeSpec(o *store.Object, dst any) error {
	if len(o.Spec) == 0 {
		return nil
	}
	if err := json.Unmarshal(o.Spec, dst); err != nil {
		return fmt.Errorf("decode %s %q: %w", o.Kind, o.ID, err)
	}
	return nil
}
