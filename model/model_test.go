package model

import (
	"strings"
	"testing"
)

func TestValidTenantID(t *testing.T) {
	for id, want := range map[string]bool{
		"a": true, "acme": true,
		strings.Repeat("a", 63): true, strings.Repeat("a", 64): false, "acme-corp-2": true, "0": true,
		"a23456789012345678901234567890123456789012345678901234567890123": true, // 63
		"": false, "Acme": false, "-acme": false, "acme-": false, "ac_me": false,
		"ac.me": false, "ac me": false, "ácme": false,
	} {
		if got := ValidTenantID(id); got != want {
			t.Errorf("ValidTenantID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestValidObjectID(t *testing.T) {
	for id, want := range map[string]bool{
		"1": true, "block": true, "svc.v1_a~b-c": true, "A": true,
		"": false, "-x": false, ".x": false, "a/b": false, "a b": false, "a%2f": false,
	} {
		if got := ValidObjectID(id); got != want {
			t.Errorf("ValidObjectID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestTenantTransitions(t *testing.T) {
	cases := []struct {
		from, to TenantStatus
		want     bool
	}{
		{TenantAvailable, TenantDisabled, true},
		{TenantDisabled, TenantAvailable, true},
		{TenantAvailable, TenantAvailable, true},
		{TenantCreating, TenantAvailable, true},
		{TenantDisabled, TenantUpdating, false},
		{TenantAvailable, TenantCreating, false},
		{TenantDeleted, TenantAvailable, false},
		{TenantDeleted, TenantDeleted, false},
		{TenantUpdating, TenantAvailable, true},
	}
	for _, c := range cases {
		if got := CanTransition(c.from, c.to); got != c.want {
			t.Errorf("CanTransition(%s, %s) = %v, want %v", c.from, c.to, got, c.want)
		}
	}
	for _, s := range []TenantStatus{TenantCreating, TenantUpdating, TenantDeleted, "BOGUS"} {
		if ClientSettableStatus(s) {
			t.Errorf("callers must not be able to set %s", s)
		}
	}
	if TenantStatus("BOGUS").Valid() || !TenantDisabled.Valid() {
		t.Error("Valid() is wrong")
	}
}
