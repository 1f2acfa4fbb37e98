package clientauth

import (
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/model"
)

func TestNewSecretAndHash(t *testing.T) {
	a, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSecret()
	if len(a) != 43 || a == b || strings.ContainsAny(a, "+/=") {
		t.Fatalf("secrets %q %q: want distinct 43-character base64url strings", a, b)
	}
	h := HashSecret("abc")
	if h != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" || !ValidHash(h) {
		t.Fatalf("HashSecret(abc) = %s", h)
	}
	for _, bad := range []string{"", "xyz", strings.ToUpper(h), h[:63], h + "0"} {
		if ValidHash(bad) {
			t.Errorf("ValidHash(%q) = true", bad)
		}
	}
}

func TestClientSecretValid(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	graceEnd := now.Add(time.Hour)
	spec := &model.ClientSpec{SecretHash: HashSecret("new-secret"), PreviousSecretHash: HashSecret("old-secret"), PreviousSecretExpiresAt: &graceEnd}
	cases := []struct {
		name   string
		spec   *model.ClientSpec
		secret string
		at     time.Time
		want   bool
	}{
		{"current", spec, "new-secret", now, true},
		{"previous in grace", spec, "old-secret", now, true},
		{"previous at the end of grace", spec, "old-secret", graceEnd, false},
		{"previous after grace", spec, "old-secret", graceEnd.Add(time.Second), false},
		{"current after grace", spec, "new-secret", graceEnd.Add(time.Hour), true},
		{"wrong", spec, "new-secreT", now, false},
		{"empty", spec, "", now, false},
		{"the hash itself", spec, spec.SecretHash, now, false},
		{"previous without an end", &model.ClientSpec{SecretHash: HashSecret("a"), PreviousSecretHash: HashSecret("b")}, "b", now, false},
		{"public", &model.ClientSpec{Public: true, SecretHash: HashSecret("a")}, "a", now, false},
		{"no secret", &model.ClientSpec{}, "", now, false},
		{"nil", nil, "a", now, false},
		{"corrupt hash", &model.ClientSpec{SecretHash: "zz"}, "a", now, false},
		{"before expiry", &model.ClientSpec{SecretHash: HashSecret("a"), ClientSecretExpiresAt: now.Unix() + 1}, "a", now, true},
		{"expired", &model.ClientSpec{SecretHash: HashSecret("a"), ClientSecretExpiresAt: now.Unix()}, "a", now, false},
		{"expired previous", &model.ClientSpec{SecretHash: HashSecret("a"), PreviousSecretHash: HashSecret("b"), PreviousSecretExpiresAt: &graceEnd,
			ClientSecretExpiresAt: now.Unix() - 1}, "b", now, false},
	}
	for _, c := range cases {
		if got := ClientSecretValid(c.spec, c.secret, c.at); got != c.want {
			t.Errorf("%s: ClientSecretValid = %v, want %v", c.name, got, c.want)
		}
	}
}
