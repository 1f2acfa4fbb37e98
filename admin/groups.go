package admin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Groups (WAVE2 §1.2 rows 24–28): /api/admin/{tid}/groups[/{gid}], flat
// sets of users and service accounts of the tenant. Every membership is
// also a marker object (model.KindGroupMember: name "<gid>/<principal>",
// parent the principal key) written in the transaction of the group's
// write, so "the groups of X" is a read of the (tenant, kind, parent_id)
// index, not a scan of the groups. role_ids are the group's tenant roles
// (issue G): accepted and stored, checked as ids only, until roles exist.

var (
	groupRepo       = store.Repo[model.GroupSpec]{Kind: model.KindGroup}
	groupMemberRepo = store.Repo[model.GroupMemberSpec]{Kind: model.KindGroupMember}
)

// maxGroupMembers bounds each of a group's lists (user_ids,
// service_account_ids, role_ids).
const maxGroupMembers = 10000

// groupBody is a group on the wire: the body of create and PUT and what
// GET returns (tenant_id and metadata read-only).
type groupBody struct {
	ID                string            `json:"id"`
	TenantID          string            `json:"tenant_id"`
	Name              string            `json:"name"`
	Description       string            `json:"description"`
	UserIDs           []string          `json:"user_ids"`
	ServiceAccountIDs []string          `json:"service_account_ids"`
	RoleIDs           []string          `json:"role_ids"`
	Labels            map[string]string `json:"labels"`
	Metadata          *Metadata         `json:"metadata,omitempty"`
}

func renderGroup(t *store.Typed[model.GroupSpec]) groupBody {
	return groupBody{ID: t.Meta.ID, TenantID: t.Meta.TenantID, Name: t.Meta.Name, Description: t.Meta.Description,
		UserIDs: nonNilStrings(t.Spec.UserIDs), ServiceAccountIDs: nonNilStrings(t.Spec.ServiceAccountIDs),
		RoleIDs: nonNilStrings(t.Spec.RoleIDs), Labels: labelsOrEmpty(t.Meta.Labels), Metadata: metadataOf(&t.Meta)}
}

// addGroupKinds registers groups and their membership markers, projects
// (projects.go) and the identities routes (identities.go).
func addGroupKinds(sch *resource.Scheme) {
	// The members are Unlink references: a deleted user or service
	// account leaves its groups (removePrincipalMemberships, by the
	// markers' index); they order the document (users and service
	// accounts before groups) and resolve its references.
	sch.MustRegister(&resource.Kind{
		Name: model.KindGroup, Singular: "group", Canonical: resource.SpecCodec[model.GroupSpec], Exported: true,
		Refs: []resource.Ref{
			{Field: "user_ids", Kind: model.KindUser, Many: true, OnDelete: resource.Unlink,
				IDs: specIDs(func(s *model.GroupSpec) []string { return s.UserIDs })},
			{Field: "service_account_ids", Kind: model.KindServiceAccount, Many: true, OnDelete: resource.Unlink,
				IDs: specIDs(func(s *model.GroupSpec) []string { return s.ServiceAccountIDs })},
		},
		API: &kindAPI{
			param: "gid", current: typedCurrent(groupRepo, renderGroup), nameField: "name",
			list:   func(s *Server, c *gin.Context) { listKind(s, c, groupRepo, "group", "groups", renderGroup) },
			get:    func(s *Server, c *gin.Context) { getKind(s, c, groupRepo, "gid", "group", renderGroup) },
			create: (*Server).createGroup,
			put:    (*Server).updateGroup,
			onRemove: func(_ *Server, ctx context.Context, tx store.Tx, o *store.Object) error {
				return groupRemoved(ctx, tx, o)
			},
			export:      exportGroup,
			importItem:  importOf(configGroupObject),
			importWrite: importGroupWrite,
		},
	})
	sch.MustRegister(&resource.Kind{Name: model.KindGroupMember, Singular: "group membership", Internal: true})
	addProjectKinds(sch)
}

// validate checks a body (everything that needs no other object) into
// the group's envelope and spec.
func (r *groupBody) validate(tid string) (store.Object, model.GroupSpec, *Error) {
	var errs field.ErrorList
	if e := tenantMatch(r.TenantID, tid); e != nil {
		errs.Extend(e.Fields())
	}
	errs.Extend(textErrors("name", r.Name, true, 256))
	errs.Extend(textErrors("description", r.Description, false, 1024))
	errs.Extend(labelErrors(r.Labels))
	errs.Extend(idListErrors("user_ids", r.UserIDs, maxGroupMembers))
	errs.Extend(idListErrors("service_account_ids", r.ServiceAccountIDs, maxGroupMembers))
	errs.Extend(idListErrors("role_ids", r.RoleIDs, maxGroupMembers))
	if len(errs) > 0 {
		return store.Object{}, model.GroupSpec{}, fieldErrors(errs)
	}
	meta := store.Object{Name: r.Name, Description: r.Description, Labels: r.Labels}
	return meta, model.GroupSpec{UserIDs: r.UserIDs, ServiceAccountIDs: r.ServiceAccountIDs, RoleIDs: r.RoleIDs}, nil
}

// idListErrors checks a list of object ids: valid, no duplicates, at
// most max; errors name the element (user_ids[2]).
func idListErrors(name string, ids []string, max int) field.ErrorList {
	var errs field.ErrorList
	if len(ids) > max {
		return field.ErrorList{field.Invalid(field.NewPath(name), "at most %d ids are allowed (got %d)", max, len(ids))}
	}
	seen := make(map[string]bool, len(ids))
	for i, id := range ids {
		p := field.NewPath(name).Index(i)
		switch {
		case !model.ValidObjectID(id):
			errs.Add(field.Invalid(p, "invalid id %q (%s)", id, model.ObjectIDRule))
		case seen[id]:
			errs.Add(field.Invalid(p, "%q is listed twice", id))
		}
		seen[id] = true
	}
	return errs
}

// unknownElement is the 404 of a list element naming an object that does
// not exist: the message and details name the element (user_ids[2]).
func unknownElement(name string, i int, what, id string) *Error {
	f := fmt.Sprintf("%s[%d]", name, i)
	return newError(http.StatusNotFound, httpapi.CodeNotFound, fmt.Sprintf("%s: %s %q does not exist", f, what, id),
		map[string]any{"field": f, "kind": what, "id": id})
}

// checkGroupMembers fails with a 404 naming the first member of spec that
// is not a live user or service account of the tenant.
func checkGroupMembers(ctx context.Context, rd store.Reader, tid string, spec *model.GroupSpec) error {
	for i, id := range spec.UserIDs {
		if err := mustExist(ctx, rd, model.KindUser, tid, id, func() error { return unknownElement("user_ids", i, "user", id) }); err != nil {
			return err
		}
	}
	for i, id := range spec.ServiceAccountIDs {
		if err := mustExist(ctx, rd, model.KindServiceAccount, tid, id, func() error { return unknownElement("service_account_ids", i, "service account", id) }); err != nil {
			return err
		}
	}
	return nil
}

// mustExist is nil when the live object (kind, tid, id) exists, missing()
// when it does not, and the store's error otherwise.
func mustExist(ctx context.Context, rd store.Reader, kind, tid, id string, missing func() error) error {
	_, err := rd.Get(ctx, kind, tid, id)
	if errors.Is(err, store.ErrNotFound) {
		return missing()
	}
	return err
}

// groupPrincipals are the principal keys of a group's members.
func groupPrincipals(spec *model.GroupSpec) []string {
	out := make([]string, 0, len(spec.UserIDs)+len(spec.ServiceAccountIDs))
	for _, id := range spec.UserIDs {
		out = append(out, model.PrincipalKey(model.PrincipalUser, id))
	}
	for _, id := range spec.ServiceAccountIDs {
		out = append(out, model.PrincipalKey(model.PrincipalServiceAccount, id))
	}
	return out
}

// markerID is the object id of a marker of that unique name: its hex
// SHA-256, so a marker is found (and deleted) by its name with one read.
func markerID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

// groupMemberName is the name of the marker of principal in group gid.
func groupMemberName(gid, principal string) string { return gid + "/" + principal }

// syncGroupMarkers makes the group's markers those of after (nil: none),
// given those of before (nil: none), in tx.
func syncGroupMarkers(ctx context.Context, tx store.Tx, tid, gid string, before, after *model.GroupSpec) error {
	var old, want []string
	if before != nil {
		old = groupPrincipals(before)
	}
	if after != nil {
		want = groupPrincipals(after)
	}
	for _, p := range old {
		if !slices.Contains(want, p) {
			if err := deleteMarker(ctx, tx, model.KindGroupMember, tid, groupMemberName(gid, p)); err != nil {
				return err
			}
		}
	}
	for _, p := range want {
		if slices.Contains(old, p) {
			continue
		}
		name := groupMemberName(gid, p)
		m := &store.Typed[model.GroupMemberSpec]{
			Meta: store.Object{TenantID: tid, ID: markerID(name), Name: name, ParentID: p, CreatedBy: "system"},
			Spec: model.GroupMemberSpec{GroupID: gid, Principal: p},
		}
		if err := groupMemberRepo.Create(ctx, tx, m); err != nil {
			return fmt.Errorf("record %s in group %q: %w", p, gid, err)
		}
	}
	return nil
}

// deleteMarker deletes the marker of that kind and name, if there is one.
func deleteMarker(ctx context.Context, tx store.Tx, kind, tid, name string) error {
	if _, err := tx.Delete(ctx, kind, tid, markerID(name), 0, false); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("delete %s %q: %w", kind, name, err)
	}
	return nil
}

// groupsOf is the ids of the groups principal is a member of, sorted (an
// index read of its markers).
func groupsOf(ctx context.Context, rd store.Reader, tid, principal string) ([]string, error) {
	ms, err := groupMemberRepo.ListAll(ctx, rd, store.Query{TenantID: tid, ParentID: principal})
	if err != nil {
		return nil, fmt.Errorf("list the groups of %s: %w", principal, err)
	}
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Spec.GroupID)
	}
	slices.Sort(out)
	return out, nil
}

// createGroup answers POST /groups.
func (s *Server) createGroup(c *gin.Context) {
	k := s.scheme.MustKind(model.KindGroup)
	after := func(ctx context.Context, tx store.Tx, t *store.Typed[model.GroupSpec]) error {
		return syncGroupMarkers(ctx, tx, t.Meta.TenantID, t.Meta.ID, nil, &t.Spec)
	}
	createKind(s, c, k, renderGroup, after, func(c *gin.Context, tid string) (*store.Typed[model.GroupSpec], func(context.Context, store.Tx, *store.Typed[model.GroupSpec]) error, *Error) {
		var req groupBody
		if apiErr := decodeJSON(c, &req); apiErr != nil {
			return nil, nil, apiErr
		}
		id, idErr := newObjectID("id", req.ID)
		meta, spec, apiErr := req.validate(tid)
		if apiErr = collect(idErr, apiErr); apiErr != nil {
			return nil, nil, apiErr
		}
		meta.ID = id
		return &store.Typed[model.GroupSpec]{Meta: meta, Spec: spec}, func(ctx context.Context, tx store.Tx, t *store.Typed[model.GroupSpec]) error {
			return checkGroupMembers(ctx, tx, tid, &t.Spec)
		}, nil
	})
}

// updateGroup answers PUT /groups/{gid}: the body replaces the group;
// the markers follow its members.
func (s *Server) updateGroup(c *gin.Context) {
	tid := tenantID(c)
	updateKind(s, c, groupRepo, "gid", "group", renderGroup, func(c *gin.Context, id string) (func(context.Context, store.Tx, *store.Typed[model.GroupSpec]) error, *Error) {
		var req groupBody
		if apiErr := decodeUpdate(c, &req, func() string { return req.ID }, id); apiErr != nil {
			return nil, apiErr
		}
		meta, spec, apiErr := req.validate(tid)
		if apiErr != nil {
			return nil, apiErr
		}
		return func(ctx context.Context, tx store.Tx, t *store.Typed[model.GroupSpec]) error {
			if err := checkGroupMembers(ctx, tx, tid, &spec); err != nil {
				return err
			}
			old := t.Spec
			t.Meta.Name, t.Meta.Description, t.Meta.Labels = meta.Name, meta.Description, meta.Labels
			t.Spec = spec
			return syncGroupMarkers(ctx, tx, tid, id, &old, &t.Spec)
		}, nil
	})
}

// groupRemoved runs in a group's delete: its markers go, and so does its
// place in every project that lists it (found by the projects' markers).
func groupRemoved(ctx context.Context, tx store.Tx, o *store.Object) error {
	var spec model.GroupSpec
	if len(o.Spec) > 0 {
		if err := json.Unmarshal(o.Spec, &spec); err != nil {
			return fmt.Errorf("decode group %q: %w", o.ID, err)
		}
	}
	if err := syncGroupMarkers(ctx, tx, o.TenantID, o.ID, &spec, nil); err != nil {
		return err
	}
	links, err := projectGroupRepo.ListAll(ctx, tx, store.Query{TenantID: o.TenantID, ParentID: model.PrincipalKey(model.PrincipalGroup, o.ID)})
	if err != nil {
		return fmt.Errorf("list the projects of group %q: %w", o.ID, err)
	}
	for _, l := range links {
		p, err := projectRepo.Get(ctx, tx, o.TenantID, l.Spec.ProjectID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err == nil {
			p.Spec.GroupIDs = slices.DeleteFunc(p.Spec.GroupIDs, func(g string) bool { return g == o.ID })
			if err := projectRepo.Update(ctx, tx, p, 0); err != nil {
				return fmt.Errorf("remove group %q from project %q: %w", o.ID, p.Meta.ID, err)
			}
		}
		if _, err := tx.Delete(ctx, kindProjectGroup, o.TenantID, l.Meta.ID, 0, false); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}

// removePrincipalMemberships removes principal (a principal key,
// "user:<id>" or "service_account:<id>") from every group of the tenant
// (the group's list and its marker) and every project it is assigned to
// directly, in tx: for the delete of a user or a service account. Found
// by the index of the markers, not by scanning groups or projects.
func removePrincipalMemberships(ctx context.Context, tx store.Tx, tid, principal string) error {
	typ, id, ok := model.ParsePrincipalKey(principal)
	if !ok || typ == model.PrincipalGroup {
		return fmt.Errorf("remove the memberships of %q: not a user or service account key", principal)
	}
	ms, err := groupMemberRepo.ListAll(ctx, tx, store.Query{TenantID: tid, ParentID: principal})
	if err != nil {
		return fmt.Errorf("list the groups of %s: %w", principal, err)
	}
	for _, m := range ms {
		g, err := groupRepo.Get(ctx, tx, tid, m.Spec.GroupID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err == nil {
			drop := func(v string) bool { return v == id }
			if typ == model.PrincipalUser {
				g.Spec.UserIDs = slices.DeleteFunc(g.Spec.UserIDs, drop)
			} else {
				g.Spec.ServiceAccountIDs = slices.DeleteFunc(g.Spec.ServiceAccountIDs, drop)
			}
			if err := groupRepo.Update(ctx, tx, g, 0); err != nil {
				return fmt.Errorf("remove %s from group %q: %w", principal, g.Meta.ID, err)
			}
		}
		if _, err := tx.Delete(ctx, model.KindGroupMember, tid, m.Meta.ID, 0, false); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	pms, err := projectMemberRepo.ListAll(ctx, tx, store.Query{TenantID: tid, ParentID: principal})
	if err != nil {
		return fmt.Errorf("list the projects of %s: %w", principal, err)
	}
	for _, m := range pms {
		if _, err := tx.Delete(ctx, model.KindProjectMember, tid, m.Meta.ID, 0, false); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}

// setPrincipalGroups makes principal a member of exactly the groups gids
// (each must exist: a 404 naming field[i]), updating the groups it joins
// or leaves and their markers, in tx; c records the groups' audit events.
func setPrincipalGroups(ctx context.Context, tx store.Tx, c *gin.Context, tid, principal, fieldName string, gids []string) error {
	typ, id, ok := model.ParsePrincipalKey(principal)
	if !ok || typ == model.PrincipalGroup {
		return fmt.Errorf("set the groups of %q: not a user or service account key", principal)
	}
	current, err := groupsOf(ctx, tx, tid, principal)
	if err != nil {
		return err
	}
	list := func(g *model.GroupSpec) *[]string {
		if typ == model.PrincipalUser {
			return &g.UserIDs
		}
		return &g.ServiceAccountIDs
	}
	change := func(gid string, join bool) error {
		g, err := groupRepo.Get(ctx, tx, tid, gid)
		if err != nil {
			return err
		}
		old := g.Spec
		old.UserIDs, old.ServiceAccountIDs = slices.Clone(old.UserIDs), slices.Clone(old.ServiceAccountIDs)
		l := list(&g.Spec)
		if join {
			if len(*l) >= maxGroupMembers {
				return fieldError(fieldName, "group %q has %d members of that kind already (at most %d)", gid, len(*l), maxGroupMembers)
			}
			*l = append(*l, id)
		} else {
			*l = slices.DeleteFunc(*l, func(v string) bool { return v == id })
		}
		g.Meta.UpdatedBy = actor(c)
		if err := groupRepo.Update(ctx, tx, g, 0); err != nil {
			return err
		}
		if err := syncGroupMarkers(ctx, tx, tid, gid, &old, &g.Spec); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "update", model.KindGroup, gid)
	}
	for i, gid := range gids {
		if err := mustExist(ctx, tx, model.KindGroup, tid, gid, func() error { return unknownElement(fieldName, i, "group", gid) }); err != nil {
			return err
		}
	}
	for _, gid := range current {
		if !slices.Contains(gids, gid) {
			if err := change(gid, false); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
	}
	for _, gid := range gids {
		if !slices.Contains(current, gid) {
			if err := change(gid, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// userExists is nil when uid is a live user of the tenant, a 404 naming
// it when not.
func userExists(ctx context.Context, rd store.Reader, tid, uid string) error {
	_, err := directory.Users.Get(ctx, rd, tid, uid)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("user", uid)
	}
	return err
}
