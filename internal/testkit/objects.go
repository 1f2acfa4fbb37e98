package testkit

import (
	"encoding/json"
	"fmt"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// The builders below return the configuration objects most tests need,
// as the admin API stores them (kind, envelope, JSON spec), for Create or
// tx.Create. Change a field of the result for anything they do not set.

// Tenant is an available tenant named after its id.
func Tenant(id string) *store.Object {
	return object(model.KindTenant, "", id, "", model.TenantSpec{Name: id, Status: model.TenantAvailable})
}

// Service is service id of tenant tid (named id) at url, served under hosts.
func Service(tid, id, url string, hosts ...string) *store.Object {
	return object(model.KindService, tid, id, id, model.ServiceSpec{URL: url, Hosts: hosts})
}

// API is API id of tenant tid, a child of spec.ServiceID, without a name.
func API(tid, id string, spec model.APISpec) *store.Object {
	o := object(model.KindAPI, tid, id, "", spec)
	o.ParentID = spec.ServiceID
	return o
}

// Policy is policy id of tenant tid, named id.
func Policy(tid, id string, spec model.PolicySpec) *store.Object {
	return object(model.KindPolicy, tid, id, id, spec)
}

// Gateway is gateway id of tenant tid, named id.
func Gateway(tid, id string, spec model.GatewaySpec) *store.Object {
	return object(model.KindGateway, tid, id, id, spec)
}

// Validators is a validators policy with the given checks.
func Validators(checks ...model.ValidatorConfig) model.PolicySpec {
	return model.PolicySpec{Language: model.LanguageValidators, Validators: checks}
}

// AllowAll is the validator that allows every request.
func AllowAll() model.ValidatorConfig { return model.ValidatorConfig{Name: "true"} }

// HeaderEquals is the validator that requires header name to be value.
func HeaderEquals(name, value string) model.ValidatorConfig {
	return model.ValidatorConfig{Name: "header", Conf: map[string]any{"name": name, "value": value}}
}

func object(kind, tid, id, name string, spec any) *store.Object {
	raw, err := json.Marshal(spec)
	if err != nil {
		// The model's specs always encode; a failure is a bug in the kit.
		panic(fmt.Sprintf("testkit: encode %s %q: %v", kind, id, err))
	}
	return &store.Object{Kind: kind, TenantID: tid, ID: id, Name: name, Spec: raw}
}
