package openapiimport

import (
	"math/rand"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/model"
)

func TestAPIID(t *testing.T) {
	long := strings.Repeat("getAVeryLongOperationName", 10) // 250 characters
	for _, c := range []struct{ in, want string }{
		// Valid ids are kept as they are, case included.
		{"getPet", "getPet"},
		{"pets.get_v2~x-y", "pets.get_v2~x-y"},
		{"GetPet", "GetPet"},
		// Spaces, slashes and other separators: one '-' per run.
		{"get pet", "get-pet"},
		{"get   pet  by id", "get-pet-by-id"},
		{"pets/{id}/get", "pets-id-get"},
		{"Pets::Get", "Pets-Get"},
		{"a - b", "a---b"}, // a '-' of the operationId is kept
		// Unicode: accents dropped, compatibility forms folded, other
		// scripts are separators.
		{"Café", "Cafe"},
		{"Cafe\u0301", "Cafe"},
		{"getÜbersicht", "getUbersicht"},
		{"Ｇｅｔ", "Get"},
		{"ﬁnd", "find"},
		{"получить pet", "pet"},
		{"pet 取得 by id", "pet-by-id"},
		// The id must start with a letter or digit; no '-' left at the end.
		{"_private", "private"},
		{"--x", "x"},
		{".hidden", "hidden"},
		{"list pets!", "list-pets"},
		{"x-", "x-"},
		// Nothing usable: "" (the API gets a generated id).
		{"", ""},
		{"日本語", ""},
		{"---", ""},
		{"_.~", ""},
		{"!!!", ""},
	} {
		if got := APIID(c.in); got != c.want {
			t.Errorf("APIID(%q) = %q, want %q", c.in, got, c.want)
		}
	}

	// Too long: cut, with a hash of the whole operationId.
	a, b := APIID(long+"A"), APIID(long+"B")
	if len(a) != 128 || len(b) != 128 || a == b || !strings.HasPrefix(a, long[:119]+"-") || !model.ValidObjectID(a) {
		t.Fatalf("long ids: %q %q", a, b)
	}
	if APIID(long+"A") != a {
		t.Fatal("APIID is not deterministic")
	}
	// A cut that ends on a separator does not leave "--".
	sep := strings.Repeat("x", 118) + " " + strings.Repeat("y", 20)
	if got := APIID(sep); strings.Contains(got, "--") || len(got) > 128 || !model.ValidObjectID(got) {
		t.Fatalf("cut at a separator: %q", got)
	}
	// Exactly 128 characters is not cut.
	if exact := strings.Repeat("z", 128); APIID(exact) != exact {
		t.Fatal("a 128-character id was changed")
	}
}

// TestAPIIDIsAlwaysAnObjectID: whatever the operationId, the id is "" or
// valid by model.ValidObjectID.
func TestAPIIDIsAlwaysAnObjectID(t *testing.T) {
	alphabet := []rune("aZ09._~-/ :{}!é\u0301日ß\x00\t\u00a0Ｇ")
	rng := rand.New(rand.NewSource(7))
	for range 20000 {
		n := rng.Intn(200)
		rs := make([]rune, n)
		for i := range rs {
			rs[i] = alphabet[rng.Intn(len(alphabet))]
		}
		in := string(rs)
		if got := APIID(in); got != "" && !model.ValidObjectID(got) {
			t.Fatalf("APIID(%q) = %q, not an object id", in, got)
		}
	}
}

func FuzzAPIID(f *testing.F) {
	for _, s := range []string{"getPet", "get pet", "Café", "日本語", strings.Repeat("ab ", 60), "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if got := APIID(in); got != "" && !model.ValidObjectID(got) {
			t.Fatalf("APIID(%q) = %q, not an object id", in, got)
		}
	})
}
