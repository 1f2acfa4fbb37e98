package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Projects (WAVE2 §1.2 rows 29–33, seed 001 spaces):
// /api/admin/{tid}/projects[/{pid}], status READY at once. A principal is
// a member of a project when it is assigned to it directly
// (model.KindProjectMember, PUT …/members/{users|service-accounts}/{id})
// or is in a group the project lists (group_ids). The markers — direct
// assignments (parent: the principal), group memberships (groups.go) and
// the project's groups (kindProjectGroup, parent: the group) — make
// "the projects of X" index reads. Deleting a project deletes its
// assignments and markers.

var (
	projectRepo       = store.Repo[model.ProjectSpec]{Kind: model.KindProject}
	projectMemberRepo = store.Repo[model.ProjectMemberSpec]{Kind: model.KindProjectMember}
	projectGroupRepo  = store.Repo[projectGroupSpec]{Kind: kindProjectGroup}
)

// kindProjectGroup is the internal marker of a group a project lists:
// name "<pid>/<gid>", parent the group's principal key ("group:<gid>"),
// written with the project, so the projects of a group are an index read.
const kindProjectGroup = "project-groups"

// projectGroupSpec is one kindProjectGroup marker.
type projectGroupSpec struct {
	ProjectID string `json:"project_id"`
	GroupID   string `json:"group_id"`
}

// Limits of projects (seed 001: name 1..50, description ..300).
const (
	maxProjectName        = 50
	maxProjectDescription = 300
	maxProjectGroups      = 1000
)

// projectBody is a project on the wire (tenant_id, status and metadata
// read-only).
type projectBody struct {
	ID          string            `json:"id"`
	TenantID    string            `json:"tenant_id"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	GroupIDs    []string          `json:"group_ids"`
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Metadata    *Metadata         `json:"metadata,omitempty"`
}

func renderProject(t *store.Typed[model.ProjectSpec]) projectBody {
	return projectBody{ID: t.Meta.ID, TenantID: t.Meta.TenantID, Name: t.Meta.Name, Description: t.Meta.Description,
		GroupIDs: nonNilStrings(t.Spec.GroupIDs), Status: model.ProjectStatusReady, Labels: labelsOrEmpty(t.Meta.Labels),
		Metadata: metadataOf(&t.Meta)}
}

// addProjectKinds registers projects, their direct members and the
// marker of their groups.
func addProjectKinds(sch *resource.Scheme) {
	// group_ids is an Unlink reference: a deleted group leaves its
	// projects (groupRemoved, by the project-group markers). The document
	// item also carries the direct members (directory_config.go).
	sch.MustRegister(&resource.Kind{
		Name: model.KindProject, Singular: "project", Canonical: resource.SpecCodec[projectDocumentSpec], Exported: true,
		Refs: []resource.Ref{{Field: "group_ids", Kind: model.KindGroup, Many: true, OnDelete: resource.Unlink,
			IDs: specIDs(func(s *model.ProjectSpec) []string { return s.GroupIDs })}},
		API: &kindAPI{
			param: "pid", readOnly: []string{"status"}, current: typedCurrent(projectRepo, renderProject), nameField: "name",
			list:   func(s *Server, c *gin.Context) { listKind(s, c, projectRepo, "project", "projects", renderProject) },
			get:    func(s *Server, c *gin.Context) { getKind(s, c, projectRepo, "pid", "project", renderProject) },
			create: (*Server).createProject,
			put:    (*Server).updateProject,
			onRemove: func(_ *Server, ctx context.Context, tx store.Tx, o *store.Object) error {
				return projectRemoved(ctx, tx, o)
			},
			routes: func(s *Server, _, adm *gin.RouterGroup) {
				for _, m := range []struct{ typ, path, param string }{
					{model.PrincipalUser, "users", "uid"},
					{model.PrincipalServiceAccount, "service-accounts", "said"},
				} {
					adm.PUT("/projects/:pid/members/"+m.path+"/:"+m.param, s.assignProjectMember(m.typ, m.param))
					adm.DELETE("/projects/:pid/members/"+m.path+"/:"+m.param, s.unassignProjectMember(m.typ, m.param))
					adm.GET("/"+m.path+"/:"+m.param+"/projects", s.principalProjects(m.typ, m.param))
				}
				adm.POST("/projects/:pid/users", s.createProjectUser)
			},
			export: exportProject, importItem: importOf(configProjectObject), importWrite: importProjectWrite,
			documentState: projectDocumentState,
		},
	})
	sch.MustRegister(&resource.Kind{Name: model.KindProjectMember, Singular: "project membership", Internal: true})
	sch.MustRegister(&resource.Kind{Name: kindProjectGroup, Singular: "project group", Internal: true})
}

// validate checks a body into the project's envelope and spec.
func (r *projectBody) validate(tid string) (store.Object, model.ProjectSpec, *Error) {
	var errs field.ErrorList
	if e := tenantMatch(r.TenantID, tid); e != nil {
		errs.Extend(e.Fields())
	}
	errs.Extend(textErrors("name", r.Name, true, maxProjectName))
	errs.Extend(textErrors("description", r.Description, false, maxProjectDescription))
	errs.Extend(labelErrors(r.Labels))
	errs.Extend(idListErrors("group_ids", r.GroupIDs, maxProjectGroups))
	if r.Status != "" && r.Status != model.ProjectStatusReady {
		errs.Add(field.ReadOnly(field.NewPath("status"), "is read-only (a project is READY at once)"))
	}
	if len(errs) > 0 {
		return store.Object{}, model.ProjectSpec{}, fieldErrors(errs)
	}
	return store.Object{Name: r.Name, Description: r.Description, Labels: r.Labels},
		model.ProjectSpec{GroupIDs: r.GroupIDs, Status: model.ProjectStatusReady}, nil
}

// checkProjectGroups fails with a 404 naming the first group the project
// lists that does not exist.
func checkProjectGroups(ctx context.Context, rd store.Reader, tid string, spec *model.ProjectSpec) error {
	for i, gid := range spec.GroupIDs {
		if err := mustExist(ctx, rd, model.KindGroup, tid, gid, func() error { return unknownElement("group_ids", i, "group", gid) }); err != nil {
			return err
		}
	}
	return nil
}

func projectGroupName(pid, gid string) string { return pid + "/" + gid }

// syncProjectGroups makes the project's group markers those of after's
// groups, given before's (nil: none), in tx.
func syncProjectGroups(ctx context.Context, tx store.Tx, tid, pid string, before, after []string) error {
	for _, gid := range before {
		if !slices.Contains(after, gid) {
			if err := deleteMarker(ctx, tx, kindProjectGroup, tid, projectGroupName(pid, gid)); err != nil {
				return err
			}
		}
	}
	for _, gid := range after {
		if slices.Contains(before, gid) {
			continue
		}
		name := projectGroupName(pid, gid)
		m := &store.Typed[projectGroupSpec]{
			Meta: store.Object{TenantID: tid, ID: markerID(name), Name: name, ParentID: model.PrincipalKey(model.PrincipalGroup, gid), CreatedBy: "system"},
			Spec: projectGroupSpec{ProjectID: pid, GroupID: gid},
		}
		if err := projectGroupRepo.Create(ctx, tx, m); err != nil {
			return fmt.Errorf("record group %q of project %q: %w", gid, pid, err)
		}
	}
	return nil
}

// createProject answers POST /projects.
func (s *Server) createProject(c *gin.Context) {
	k := s.scheme.MustKind(model.KindProject)
	after := func(ctx context.Context, tx store.Tx, t *store.Typed[model.ProjectSpec]) error {
		return syncProjectGroups(ctx, tx, t.Meta.TenantID, t.Meta.ID, nil, t.Spec.GroupIDs)
	}
	createKind(s, c, k, renderProject, after, func(c *gin.Context, tid string) (*store.Typed[model.ProjectSpec], func(context.Context, store.Tx, *store.Typed[model.ProjectSpec]) error, *Error) {
		var req projectBody
		if apiErr := decodeJSON(c, &req); apiErr != nil {
			return nil, nil, apiErr
		}
		id, idErr := newObjectID("id", req.ID)
		meta, spec, apiErr := req.validate(tid)
		if apiErr = collect(idErr, apiErr); apiErr != nil {
			return nil, nil, apiErr
		}
		meta.ID = id
		return &store.Typed[model.ProjectSpec]{Meta: meta, Spec: spec}, func(ctx context.Context, tx store.Tx, t *store.Typed[model.ProjectSpec]) error {
			return checkProjectGroups(ctx, tx, tid, &t.Spec)
		}, nil
	})
}

// updateProject answers PUT /projects/{pid} (PATCH merges into the
// current project and comes here).
func (s *Server) updateProject(c *gin.Context) {
	tid := tenantID(c)
	updateKind(s, c, projectRepo, "pid", "project", renderProject, func(c *gin.Context, id string) (func(context.Context, store.Tx, *store.Typed[model.ProjectSpec]) error, *Error) {
		var req projectBody
		if apiErr := decodeUpdate(c, &req, func() string { return req.ID }, id); apiErr != nil {
			return nil, apiErr
		}
		meta, spec, apiErr := req.validate(tid)
		if apiErr != nil {
			return nil, apiErr
		}
		return func(ctx context.Context, tx store.Tx, t *store.Typed[model.ProjectSpec]) error {
			if err := checkProjectGroups(ctx, tx, tid, &spec); err != nil {
				return err
			}
			old := t.Spec.GroupIDs
			t.Meta.Name, t.Meta.Description, t.Meta.Labels = meta.Name, meta.Description, meta.Labels
			t.Spec = spec
			return syncProjectGroups(ctx, tx, tid, id, old, t.Spec.GroupIDs)
		}, nil
	})
}

// projectRemoved runs in a project's delete: its group markers and its
// direct assignments go with it. The assignments are keyed by principal,
// so they are found by one listing of the tenant's assignments.
func projectRemoved(ctx context.Context, tx store.Tx, o *store.Object) error {
	var spec model.ProjectSpec
	if len(o.Spec) > 0 {
		if err := json.Unmarshal(o.Spec, &spec); err != nil {
			return fmt.Errorf("decode project %q: %w", o.ID, err)
		}
	}
	if err := syncProjectGroups(ctx, tx, o.TenantID, o.ID, spec.GroupIDs, nil); err != nil {
		return err
	}
	members, err := projectMemberRepo.ListAll(ctx, tx, store.Query{TenantID: o.TenantID})
	if err != nil {
		return fmt.Errorf("list the members of project %q: %w", o.ID, err)
	}
	for _, m := range members {
		if m.Spec.ProjectID != o.ID {
			continue
		}
		if _, err := tx.Delete(ctx, model.KindProjectMember, o.TenantID, m.Meta.ID, 0, false); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}

// projectMemberBody is a direct assignment on the wire.
type projectMemberBody struct {
	ProjectID string    `json:"project_id"`
	Type      string    `json:"type"`
	ID        string    `json:"id"`
	Principal string    `json:"principal"`
	Metadata  *Metadata `json:"metadata,omitempty"`
}

func renderProjectMember(t *store.Typed[model.ProjectMemberSpec]) projectMemberBody {
	typ, id, _ := model.ParsePrincipalKey(t.Spec.Principal)
	return projectMemberBody{ProjectID: t.Spec.ProjectID, Type: typ, ID: id, Principal: t.Spec.Principal, Metadata: metadataOf(&t.Meta)}
}

func projectMemberName(pid, principal string) string { return pid + "/" + principal }

// principalExists is nil when the principal of that type and id is a
// live user or service account of the tenant, a 404 naming it when not.
func principalExists(ctx context.Context, rd store.Reader, tid, typ, id string) error {
	if typ == model.PrincipalUser {
		return userExists(ctx, rd, tid, id)
	}
	_, err := serviceAccountRepo.Get(ctx, rd, tid, id)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("service account", id)
	}
	return err
}

// memberParams reads the project and principal of a member route.
func memberParams(c *gin.Context, param string) (pid, id string, ok bool) {
	pid, apiErr := objectIDParam(c, "pid")
	if apiErr == nil {
		id, apiErr = objectIDParam(c, param)
	}
	if apiErr != nil {
		abort(c, apiErr)
		return "", "", false
	}
	return pid, id, true
}

// assignProjectMember answers PUT /projects/{pid}/members/{type}/{id}:
// the principal is assigned to the project (201), or was already (200).
func (s *Server) assignProjectMember(typ, param string) gin.HandlerFunc {
	return func(c *gin.Context) {
		tid := tenantID(c)
		pid, id, ok := memberParams(c, param)
		if !ok {
			return
		}
		principal := model.PrincipalKey(typ, id)
		var (
			m       *store.Typed[model.ProjectMemberSpec]
			created bool
		)
		if !s.write(c, "project", pid, func(ctx context.Context, tx store.Tx) error {
			if _, err := projectRepo.Get(ctx, tx, tid, pid); err != nil {
				return err
			}
			if err := principalExists(ctx, tx, tid, typ, id); err != nil {
				return err
			}
			var err error
			m, created, err = putProjectMember(ctx, tx, c, tid, pid, principal)
			return err
		}) {
			return
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		respondObject(c, status, m.Meta.Revision, renderProjectMember(m))
	}
}

// putProjectMember assigns principal to project pid in tx (created false:
// it was already), recording the audit event of a new assignment.
func putProjectMember(ctx context.Context, tx store.Tx, c *gin.Context, tid, pid, principal string) (*store.Typed[model.ProjectMemberSpec], bool, error) {
	name := projectMemberName(pid, principal)
	m, err := projectMemberRepo.Get(ctx, tx, tid, markerID(name))
	if err == nil || !errors.Is(err, store.ErrNotFound) {
		return m, false, err
	}
	m = &store.Typed[model.ProjectMemberSpec]{
		Meta: store.Object{TenantID: tid, ID: markerID(name), Name: name, ParentID: principal, CreatedBy: actor(c)},
		Spec: model.ProjectMemberSpec{ProjectID: pid, Principal: principal},
	}
	if err := projectMemberRepo.Create(ctx, tx, m); err != nil {
		return nil, false, err
	}
	return m, true, record(ctx, tx, c, tid, "create", model.KindProjectMember, m.Meta.ID)
}

// createProjectUser answers POST /projects/{pid}/users (seed 001
// CreateUserSpace): POST /users's user, assigned to the project in the
// same transaction (404 when the project does not exist; nothing is
// written then).
func (s *Server) createProjectUser(c *gin.Context) {
	pid, apiErr := objectIDParam(c, "pid")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	s.createUserThen(c, func(ctx context.Context, tx store.Tx, t *store.Typed[model.UserSpec]) error {
		if _, err := projectRepo.Get(ctx, tx, t.Meta.TenantID, pid); errors.Is(err, store.ErrNotFound) {
			return notFound("project", pid)
		} else if err != nil {
			return err
		}
		_, _, err := putProjectMember(ctx, tx, c, t.Meta.TenantID, pid, model.PrincipalKey(model.PrincipalUser, t.Meta.ID))
		return err
	})
}

// unassignProjectMember answers DELETE /projects/{pid}/members/{type}/{id}
// (404 when the principal is not assigned to the project directly).
func (s *Server) unassignProjectMember(typ, param string) gin.HandlerFunc {
	return func(c *gin.Context) {
		tid := tenantID(c)
		pid, id, ok := memberParams(c, param)
		if !ok {
			return
		}
		principal := model.PrincipalKey(typ, id)
		mid := markerID(projectMemberName(pid, principal))
		if s.write(c, "project", pid, func(ctx context.Context, tx store.Tx) error {
			if _, err := projectRepo.Get(ctx, tx, tid, pid); err != nil {
				return err
			}
			if err := principalExists(ctx, tx, tid, typ, id); err != nil {
				return err
			}
			if _, err := tx.Delete(ctx, model.KindProjectMember, tid, mid, 0, false); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return notFound("project membership", principal)
				}
				return err
			}
			return record(ctx, tx, c, tid, "delete", model.KindProjectMember, mid)
		}) {
			c.Status(http.StatusNoContent)
		}
	}
}

// principalProject is a project a principal is a member of, and how.
type principalProject struct {
	project *store.Typed[model.ProjectSpec]
	direct  bool
	groups  []string
}

// projectsOf is every project principal is a member of (directly, or
// through a group the project lists), by id: index reads of its
// assignments, its groups and their projects.
func projectsOf(ctx context.Context, rd store.Reader, tid, principal string) ([]*principalProject, error) {
	by := map[string]*principalProject{}
	get := func(pid string) *principalProject {
		if by[pid] == nil {
			by[pid] = &principalProject{}
		}
		return by[pid]
	}
	direct, err := projectMemberRepo.ListAll(ctx, rd, store.Query{TenantID: tid, ParentID: principal})
	if err != nil {
		return nil, fmt.Errorf("list the projects of %s: %w", principal, err)
	}
	for _, m := range direct {
		get(m.Spec.ProjectID).direct = true
	}
	gids, err := groupsOf(ctx, rd, tid, principal)
	if err != nil {
		return nil, err
	}
	for _, gid := range gids {
		links, err := projectGroupRepo.ListAll(ctx, rd, store.Query{TenantID: tid, ParentID: model.PrincipalKey(model.PrincipalGroup, gid)})
		if err != nil {
			return nil, fmt.Errorf("list the projects of group %q: %w", gid, err)
		}
		for _, l := range links {
			p := get(l.Spec.ProjectID)
			p.groups = append(p.groups, gid)
		}
	}
	out := make([]*principalProject, 0, len(by))
	for pid, pp := range by {
		t, err := projectRepo.Get(ctx, rd, tid, pid)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		pp.project = t
		slices.Sort(pp.groups)
		out = append(out, pp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].project.Meta.ID < out[j].project.Meta.ID })
	return out, nil
}

// projectMembership says how a principal is a member of a project.
type projectMembership struct {
	Direct   bool     `json:"direct"`
	GroupIDs []string `json:"group_ids"`
}

// principalProjectBody is a project of GET /{users|service-accounts}/{id}/projects.
type principalProjectBody struct {
	projectBody
	Membership projectMembership `json:"membership"`
}

// principalProjects answers GET /users/{uid}/projects and
// /service-accounts/{said}/projects.
func (s *Server) principalProjects(typ, param string) gin.HandlerFunc {
	return func(c *gin.Context) {
		tid := tenantID(c)
		id, apiErr := objectIDParam(c, param)
		if apiErr != nil {
			abort(c, apiErr)
			return
		}
		ctx := c.Request.Context()
		var list []*principalProject
		if err := s.store.View(ctx, func(ctx context.Context, rd store.Reader) error {
			if err := principalExists(ctx, rd, tid, typ, id); err != nil {
				return err
			}
			var err error
			list, err = projectsOf(ctx, rd, tid, model.PrincipalKey(typ, id))
			return err
		}); err != nil {
			fail(c, err, "project", "")
			return
		}
		out := make([]principalProjectBody, 0, len(list))
		for _, p := range list {
			out = append(out, principalProjectBody{projectBody: renderProject(p.project),
				Membership: projectMembership{Direct: p.direct, GroupIDs: nonNilStrings(p.groups)}})
		}
		c.JSON(http.StatusOK, gin.H{"projects": out, "total": len(out)})
	}
}
