package admin

import (
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/resource"
)

// addServerKinds registers authorization servers (placeholder: the kind
// without routes until its admin API lands).
func addServerKinds(sch *resource.Scheme) {
	sch.MustRegister(&resource.Kind{Name: model.KindServer, Singular: "server", Internal: true, Bundled: true})
}
