package policies_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// A policy whose Rego, with the policies it uses, is over
// MaxClosureBytes is refused (limit_exceeded on definition); under it, it
// is accepted.
func TestCheckInTenantBoundsWhatAPolicyCompiles(t *testing.T) {
	c, err := policies.NewChecker()
	if err != nil {
		t.Fatal(err)
	}
	big := func(i int) policies.Object[model.PolicySpec] {
		pad := strings.Repeat("x", policies.MaxDefinitionBytes-200)
		return policies.Object[model.PolicySpec]{ID: fmt.Sprintf("p%d", i), Name: fmt.Sprintf("p%d", i), Spec: model.PolicySpec{
			Language: model.LanguageRego, Definition: fmt.Sprintf("package policy\n\npad := %q\n\nallow if count(pad) > 0\n", pad)}}
	}
	user := func(n int) *model.PolicySpec {
		var b strings.Builder
		b.WriteString("package policy\n\ndefault allow := false\n\nallow if {\n")
		for i := range n {
			fmt.Fprintf(&b, "\tdata.gatehouse.policies[%q].allow\n", fmt.Sprintf("p%d", i))
		}
		b.WriteString("}\n")
		return &model.PolicySpec{Language: model.LanguageRego, Definition: b.String()}
	}
	n := policies.MaxClosureBytes/policies.MaxDefinitionBytes + 1
	var tenant []policies.Object[model.PolicySpec]
	for i := range n {
		tenant = append(tenant, big(i))
	}
	problems := c.CheckInTenant("user", user(n), tenant)
	if len(problems) != 1 || problems[0].Code != "limit_exceeded" || problems[0].Field != "definition" {
		t.Fatalf("a closure of %d policies of ~64 KiB: %v", n, problems)
	}
	if problems := c.CheckInTenant("user", user(2), tenant); len(problems) != 0 {
		t.Fatalf("a closure of 2: %v", problems)
	}
}
