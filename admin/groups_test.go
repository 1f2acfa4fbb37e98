package admin_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
)

// projectIDs are the ids of a projects answer, with how each is joined:
// "p1" (direct), "p1<g1,g2>" (through groups), "p1*<g1>" (both).
func projectIDs(t *testing.T, m map[string]any) string {
	t.Helper()
	var out []string
	for _, it := range items(t, m, "projects") {
		mem := it["membership"].(map[string]any)
		s := it["id"].(string)
		if mem["direct"] == true && len(mem["group_ids"].([]any)) > 0 {
			s += "*"
		}
		if gs := mem["group_ids"].([]any); len(gs) > 0 {
			parts := make([]string, len(gs))
			for i, g := range gs {
				parts[i] = g.(string)
			}
			s += "<" + strings.Join(parts, ",") + ">"
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// TestGroups: members must exist (404 naming the element), be listed once
// and be ids (400 naming it); names are unique; the markers follow every
// write.
func TestGroups(t *testing.T) { testGroups(t, newDirEnv(t)) }

// TestGroupsOnPostgres: the same on PostgreSQL (its parent-id index).
func TestGroupsOnPostgres(t *testing.T) { testGroups(t, newDirEnvOn(t, testkit.PostgresStore(t))) }

func testGroups(t *testing.T, d *dirEnv) {
	u1 := d.createUser("ada@example.com", "Ada", "Lovelace")
	u2 := d.createUser("bob@example.com", "Bob", "")
	sa := d.createAccount(map[string]any{"name": "ci"})["id"].(string)
	const coll = "/api/admin/acme/groups"
	for _, c := range []struct {
		status int
		field  string
		body   map[string]any
	}{
		{400, "name", map[string]any{"user_ids": []string{u1}}},
		{400, "user_ids[1]", map[string]any{"name": "g", "user_ids": []string{u1, u1}}},
		{404, "user_ids[1]", map[string]any{"name": "g", "user_ids": []string{u1, "nosuch"}}},
		{404, "service_account_ids[0]", map[string]any{"name": "g", "service_account_ids": []string{u1}}},
		{400, "role_ids[0]", map[string]any{"name": "g", "role_ids": []string{"not an id"}}},
		{400, "user_ids[0]", map[string]any{"name": "g", "user_ids": []string{"not/an/id"}}},
		{400, "labels.-x-", map[string]any{"name": "g", "labels": map[string]string{"-x-": "y"}}},
	} {
		d.refused(c.status, c.field, "POST", coll, c.body)
	}
	g1 := d.expect(d.do("POST", coll, rootToken, map[string]any{"id": "g1", "name": "admins", "description": "the admins",
		"user_ids": []string{u1, u2}, "service_account_ids": []string{sa}, "role_ids": []string{"tenant-admin"}}), 201).json(t)
	if fmt.Sprint(g1["user_ids"]) != fmt.Sprint([]string{u1, u2}) || fmt.Sprint(g1["role_ids"]) != "[tenant-admin]" {
		t.Fatalf("group: %v", g1)
	}
	d.checkMarkers()
	d.refused(409, "", "POST", coll, map[string]any{"name": "admins"})
	d.expect(d.do("POST", coll, rootToken, map[string]any{"id": "g2", "name": "staff", "user_ids": []string{u1}}), 201)
	if got := d.expect(d.do("GET", "/api/admin/acme/service-accounts/"+sa, rootToken, nil), 200).json(t)["group_ids"]; fmt.Sprint(got) != "[g1]" {
		t.Fatalf("the account's groups: %v", got)
	}
	// PUT replaces the members; the markers follow.
	d.refused(404, "user_ids[0]", "PUT", coll+"/g1", map[string]any{"name": "admins", "user_ids": []string{"nosuch"}})
	d.expect(d.do("PUT", coll+"/g1", rootToken, map[string]any{"name": "admins", "user_ids": []string{u2}}), 200)
	d.checkMarkers()
	d.expect(d.do("PATCH", coll+"/g1", rootToken, map[string]any{"service_account_ids": []string{sa}}, "Content-Type", admin.MergePatchType), 200)
	d.checkMarkers()
	// The account's PUT sets its groups: out of g1, into g2.
	acct := d.expect(d.do("GET", "/api/admin/acme/service-accounts/"+sa, rootToken, nil), 200).json(t)
	acct["group_ids"] = []string{"g2"}
	d.expect(d.do("PUT", "/api/admin/acme/service-accounts/"+sa, rootToken, acct), 200)
	if g := d.expect(d.do("GET", coll+"/g2", rootToken, nil), 200).json(t); fmt.Sprint(g["service_account_ids"]) != "["+sa+"]" {
		t.Fatalf("g2 after the account joined: %v", g)
	}
	if g := d.expect(d.do("GET", coll+"/g1", rootToken, nil), 200).json(t); len(g["service_account_ids"].([]any)) != 0 {
		t.Fatalf("g1 after the account left: %v", g)
	}
	d.checkMarkers()
	// A deleted user leaves its groups.
	d.expect(d.do("DELETE", "/api/admin/acme/users/"+u2, rootToken, nil), 204)
	if g := d.expect(d.do("GET", coll+"/g1", rootToken, nil), 200).json(t); len(g["user_ids"].([]any)) != 0 {
		t.Fatalf("g1 after its user was deleted: %v", g)
	}
	d.checkMarkers()
	// Deleting a group deletes its markers.
	d.expect(d.do("DELETE", coll+"/g2", rootToken, nil), 204)
	d.checkMarkers()
	if n := d.count(model.KindGroupMember); n != 0 {
		t.Fatalf("%d markers left, want 0 (g1 has no members, g2 is gone)", n)
	}
}

// TestProjects: project rules, direct members, members through groups,
// the projects of users and service accounts, and the cascades of
// project, group and user deletes.
func TestProjects(t *testing.T) { testProjects(t, newDirEnv(t)) }

// TestProjectsOnPostgres: the same on PostgreSQL (its parent-id index).
func TestProjectsOnPostgres(t *testing.T) { testProjects(t, newDirEnvOn(t, testkit.PostgresStore(t))) }

func testProjects(t *testing.T, d *dirEnv) {
	u1 := d.createUser("ada@example.com", "Ada", "Lovelace")
	u2 := d.createUser("bob@example.com", "Bob", "")
	sa := d.createAccount(map[string]any{"name": "ci"})["id"].(string)
	d.expect(d.do("POST", "/api/admin/acme/groups", rootToken, map[string]any{"id": "g1", "name": "g1", "user_ids": []string{u2}, "service_account_ids": []string{sa}}), 201)
	const coll = "/api/admin/acme/projects"
	for _, c := range []struct {
		status int
		field  string
		body   map[string]any
	}{
		{400, "name", map[string]any{}},
		{400, "name", map[string]any{"name": strings.Repeat("n", 51)}},
		{400, "description", map[string]any{"name": "p", "description": strings.Repeat("d", 301)}},
		{404, "group_ids[0]", map[string]any{"name": "p", "group_ids": []string{"nosuch"}}},
		{400, "group_ids[1]", map[string]any{"name": "p", "group_ids": []string{"g1", "g1"}}},
		{400, "status", map[string]any{"name": "p", "status": "QUEUED"}},
	} {
		d.refused(c.status, c.field, "POST", coll, c.body)
	}
	p1 := d.expect(d.do("POST", coll, rootToken, map[string]any{"id": "p1", "name": strings.Repeat("n", 50), "description": strings.Repeat("d", 300),
		"group_ids": []string{"g1"}}), 201).json(t)
	if p1["status"] != model.ProjectStatusReady {
		t.Fatalf("project: %v", p1)
	}
	d.refused(409, "", "POST", coll, map[string]any{"name": strings.Repeat("n", 50)})
	d.expect(d.do("POST", coll, rootToken, map[string]any{"id": "p2", "name": "two"}), 201)
	d.checkMarkers()
	// PATCH is partial: the groups stay.
	r := d.expect(d.do("PATCH", coll+"/p1", rootToken, map[string]any{"description": "short"}, "Content-Type", admin.MergePatchType), 200).json(t)
	if r["description"] != "short" || fmt.Sprint(r["group_ids"]) != "[g1]" || r["status"] != "READY" {
		t.Fatalf("PATCH: %v", r)
	}
	// Direct members: PUT is idempotent (201, then 200), 404 for unknown.
	mp := coll + "/p2/members/users/" + u1
	m := d.expect(d.do("PUT", mp, rootToken, nil), 201).json(t)
	if m["project_id"] != "p2" || m["type"] != "user" || m["id"] != u1 || m["principal"] != "user:"+u1 {
		t.Fatalf("member: %v", m)
	}
	d.expect(d.do("PUT", mp, rootToken, nil), 200)
	d.refused(404, "", "PUT", coll+"/p2/members/users/nosuch", nil)
	d.refused(404, "", "PUT", coll+"/nosuch/members/users/"+u1, nil)
	d.refused(404, "", "PUT", coll+"/p2/members/service-accounts/"+u1, nil)
	d.expect(d.do("PUT", coll+"/p1/members/service-accounts/"+sa, rootToken, nil), 201)

	if got := projectIDs(t, d.expect(d.do("GET", "/api/admin/acme/users/"+u1+"/projects", rootToken, nil), 200).json(t)); got != "p2" {
		t.Fatalf("u1's projects %q, want p2 (direct)", got)
	}
	if got := projectIDs(t, d.expect(d.do("GET", "/api/admin/acme/users/"+u2+"/projects", rootToken, nil), 200).json(t)); got != "p1<g1>" {
		t.Fatalf("u2's projects %q, want p1 through g1", got)
	}
	if got := projectIDs(t, d.expect(d.do("GET", "/api/admin/acme/service-accounts/"+sa+"/projects", rootToken, nil), 200).json(t)); got != "p1*<g1>" {
		t.Fatalf("the account's projects %q, want p1 directly and through g1", got)
	}
	d.refused(404, "", "GET", "/api/admin/acme/users/nosuch/projects", nil)

	// DELETE of a member: 204, then 404 (not assigned).
	d.expect(d.do("DELETE", mp, rootToken, nil), 204)
	d.refused(404, "", "DELETE", mp, nil)
	if got := projectIDs(t, d.expect(d.do("GET", "/api/admin/acme/users/"+u1+"/projects", rootToken, nil), 200).json(t)); got != "" {
		t.Fatalf("u1's projects after the unassignment: %q", got)
	}

	// A group's delete takes it out of the projects listing it.
	d.expect(d.do("DELETE", "/api/admin/acme/groups/g1", rootToken, nil), 204)
	if p := d.expect(d.do("GET", coll+"/p1", rootToken, nil), 200).json(t); len(p["group_ids"].([]any)) != 0 {
		t.Fatalf("p1 after its group was deleted: %v", p)
	}
	d.checkMarkers()
	if got := projectIDs(t, d.expect(d.do("GET", "/api/admin/acme/users/"+u2+"/projects", rootToken, nil), 200).json(t)); got != "" {
		t.Fatalf("u2's projects after its group was deleted: %q", got)
	}

	// A user's delete takes its assignments.
	d.expect(d.do("PUT", coll+"/p2/members/users/"+u2, rootToken, nil), 201)
	d.expect(d.do("DELETE", "/api/admin/acme/users/"+u2, rootToken, nil), 204)
	if n := d.count(model.KindProjectMember); n != 1 {
		t.Fatalf("%d assignments after the user's delete, want 1 (the account's)", n)
	}

	// POST /projects/{pid}/users: a user, assigned to the project in the
	// same write; an unknown project creates nothing.
	d.refused(404, "", "POST", coll+"/nosuch/users", map[string]any{"email": "cy@example.com"})
	d.refused(400, "email", "POST", coll+"/p2/users", map[string]any{"given_name": "Cy"})
	cy := d.expect(d.do("POST", coll+"/p2/users", rootToken, map[string]any{"email": "cy@example.com", "given_name": "Cy"}), 201).json(t)
	if got := projectIDs(t, d.expect(d.do("GET", "/api/admin/acme/users/"+cy["id"].(string)+"/projects", rootToken, nil), 200).json(t)); got != "p2" {
		t.Fatalf("the projects of a user created in p2: %q", got)
	}
	d.expect(d.do("DELETE", "/api/admin/acme/users/"+cy["id"].(string), rootToken, nil), 204)

	// A project's delete takes its assignments and group links.
	d.expect(d.do("POST", "/api/admin/acme/groups", rootToken, map[string]any{"id": "g3", "name": "g3", "user_ids": []string{u1}}), 201)
	d.expect(d.do("PUT", coll+"/p1", rootToken, map[string]any{"name": "one", "group_ids": []string{"g3"}}), 200)
	d.checkMarkers()
	d.expect(d.do("DELETE", coll+"/p1", rootToken, nil), 204)
	if n := d.count(model.KindProjectMember); n != 0 {
		t.Fatalf("%d assignments after the project's delete", n)
	}
	if n := d.count("project-groups"); n != 0 {
		t.Fatalf("%d group links after the project's delete", n)
	}
	d.checkMarkers()
	if got := projectIDs(t, d.expect(d.do("GET", "/api/admin/acme/service-accounts/"+sa+"/projects", rootToken, nil), 200).json(t)); got != "" {
		t.Fatalf("the account's projects after the project's delete: %q", got)
	}
}
