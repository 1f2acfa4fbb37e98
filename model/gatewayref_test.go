package model

import "testing"

func TestGatewayRef(t *testing.T) {
	r := GatewayRef{TenantID: "acme", GatewayID: "edge-1"}
	if r.String() != "acme/edge-1" {
		t.Fatal(r.String())
	}
	back, err := ParseGatewayRef(r.String())
	if err != nil || back != r {
		t.Fatal(back, err)
	}
	if r.IsZero() || !(GatewayRef{}).IsZero() {
		t.Fatal("IsZero")
	}
	for _, bad := range []string{"", "acme", "/gw", "acme/", "a/b/c", "/"} {
		if ref, err := ParseGatewayRef(bad); err == nil {
			t.Errorf("ParseGatewayRef(%q) accepted: %+v", bad, ref)
		}
	}
	// Usable as a map key, equal by value.
	m := map[GatewayRef]int{r: 1}
	if m[GatewayRef{TenantID: "acme", GatewayID: "edge-1"}] != 1 {
		t.Fatal("map lookup by an equal ref failed")
	}
}
