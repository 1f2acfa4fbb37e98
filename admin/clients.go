package admin

import (
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/resource"
)

// addClientKinds registers OAuth clients and claims (placeholder: the
// kinds without routes until their admin API lands).
func addClientKinds(sch *resource.Scheme) {
	sch.MustRegister(&resource.Kind{Name: model.KindClient, Singular: "client", Internal: true})
	sch.MustRegister(&resource.Kind{Name: model.KindClaim, Singular: "claim", Internal: true})
}
