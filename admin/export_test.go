package admin

import (
	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

// PolicyTestsRunning is how many policy tests hold a slot (tests only).
func (s *Server) PolicyTestsRunning() int { return s.tester.Running() }

// AddNoteKind registers "notes", a kind that exists only in tests: a text
// that may name a service (which then cannot be deleted). It is the
// recipe of docs/architecture.md, "Adding a kind", in one registration.
func AddNoteKind(sch *resource.Scheme) {
	type noteSpec struct {
		Text      string `json:"text"`
		ServiceID string `json:"service_id,omitempty"`
	}
	type noteBody struct {
		ID        string            `json:"id"`
		Name      string            `json:"name"`
		Text      string            `json:"text"`
		ServiceID string            `json:"service_id,omitempty"`
		Labels    map[string]string `json:"labels"`
		TenantID  string            `json:"tenant_id,omitempty"`
		Metadata  *Metadata         `json:"metadata,omitempty"`
	}
	simpleKind[noteSpec, noteBody, noteBody]{
		Kind: &resource.Kind{
			Name: "notes", Singular: "note", Exported: true,
			Refs: []resource.Ref{{Field: "service_id", Kind: model.KindService, OnDelete: resource.Restrict,
				IDs: specIDs(func(s *noteSpec) []string { return []string{s.ServiceID} })}},
		},
		Param: "note", NameField: "name",
		Render: func(t *store.Typed[noteSpec]) noteBody {
			return noteBody{ID: t.Meta.ID, Name: t.Meta.Name, Text: t.Spec.Text, ServiceID: t.Spec.ServiceID,
				Labels: labelsOrEmpty(t.Meta.Labels), TenantID: t.Meta.TenantID, Metadata: metadataOf(&t.Meta)}
		},
		ID: func(b *noteBody) string { return b.ID },
		Build: func(_ *Server, _, _ string, b *noteBody) (store.Object, noteSpec, error) {
			var errs field.ErrorList
			errs.Extend(textErrors("name", b.Name, true, 64))
			errs.Extend(textErrors("text", b.Text, true, 1000))
			errs.Extend(labelErrors(b.Labels))
			return store.Object{Name: b.Name, Labels: b.Labels}, noteSpec{Text: b.Text, ServiceID: b.ServiceID}, errs.OrNil()
		},
	}.register(sch)
}
