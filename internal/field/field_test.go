package field

import "testing"

func TestPathString(t *testing.T) {
	for _, tc := range []struct {
		p    *Path
		want string
	}{
		{nil, ""},
		{NewPath("name"), "name"},
		{NewPath("services").Index(2).Child("url"), "services[2].url"},
		{NewPath("a", "b", "c"), "a.b.c"},
		{NewPath("hosts").Index(0).Index(1), "hosts[0][1]"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("path = %q, want %q", got, tc.want)
		}
	}
}

func TestErrorListUnder(t *testing.T) {
	var l ErrorList
	l.Add(Invalid(NewPath("url"), "must be %s", "absolute"), nil, Required(nil), Invalid(NewPath("x").Index(1), "bad"))
	if len(l) != 3 {
		t.Fatalf("Add kept %d errors, want 3 (nil dropped)", len(l))
	}
	got := l.Under(NewPath("services").Index(2))
	want := []string{"services[2].url", "services[2]", "services[2].x[1]"}
	for i, e := range got {
		if e.Field != want[i] {
			t.Errorf("error %d field = %q, want %q", i, e.Field, want[i])
		}
	}
	if l[0].Field != "url" {
		t.Errorf("Under changed the original list: %q", l[0].Field)
	}
	if got.Error() != "services[2].url: must be absolute (and 2 more)" {
		t.Errorf("Error() = %q", got.Error())
	}
	if (ErrorList{}).OrNil() != nil || l.OrNil() == nil {
		t.Error("OrNil: empty list must be nil, non-empty not")
	}
}
