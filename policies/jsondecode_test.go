package policies

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/util"
)

// checkDecodeJSON holds decodeJSON to util.UnmarshalJSON on one input.
func checkDecodeJSON(t *testing.T, in []byte) {
	t.Helper()
	var want any
	wantErr := util.UnmarshalJSON(in, &want)
	got, err := decodeJSON(in)
	if (err != nil) != (wantErr != nil) {
		t.Errorf("%q: error %v, util.UnmarshalJSON's %v", in, err, wantErr)
		return
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Errorf("%q: %#v, util.UnmarshalJSON's %#v", in, got, want)
	}
}

func TestDecodeJSONIsUnmarshalJSON(t *testing.T) {
	cases := []string{
		`{}`, `[]`, `""`, `0`, `-0`, `1.5e+3`, `-12.25E-2`, `true`, `false`, `null`, ` {"a" : [1, 2 ,{"b":null}] } `,
		`{"a":1,"a":2}`, `"\u00e9\u2028\ud83d\ude00\"\\\/\b\f\n\r\t"`, `"\ud800"`, `"\ud800\u0041"`, `"\udc00\ud800"`, `"\ud800\udc00x"`,
		"\"caf\xc3\xa9 \xff \xed\xa0\x80\"", `{"k\u0000":"v"}`,
		// refused
		``, ` `, `{`, `[1,]`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `01`, `1.`, `.5`, `1e`, `1e+`, `-`, `+1`, `tru`, `truex`, `nul`,
		`"abc`, `"\x"`, `"\u12"`, `"\u12g4"`, "\"a\x01b\"", `[1] [2]`, `{}x`, "\xef\xbb\xbf{}", `"\`, `[`, `[1`, `{"a"`, `{"a":`,
		strings.Repeat("[", 10000) + strings.Repeat("]", 10000), strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	}
	for _, c := range cases {
		checkDecodeJSON(t, []byte(c))
	}
	// Generated documents and corruptions of them.
	rnd := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{"a", "é", "<", "&", "\"", "\\", "\n", "\u2028", "\x00", "\xff", "🙂", "id", "GET"}
	var gen func(depth int) any
	gen = func(depth int) any {
		switch n := rnd.IntN(8); {
		case n == 0 && depth < 5:
			m := map[string]any{}
			for i := rnd.IntN(5); i > 0; i-- {
				m[fmt.Sprint(alphabet[rnd.IntN(len(alphabet))], rnd.IntN(3))] = gen(depth + 1)
			}
			return m
		case n == 1 && depth < 5:
			var l []any
			for i := rnd.IntN(5); i > 0; i-- {
				l = append(l, gen(depth+1))
			}
			return l
		case n == 2:
			return rnd.Float64() * 1e6
		case n == 3:
			return rnd.IntN(2) == 0
		case n == 4:
			return nil
		default:
			var b strings.Builder
			for i := rnd.IntN(6); i > 0; i-- {
				b.WriteString(alphabet[rnd.IntN(len(alphabet))])
			}
			return b.String()
		}
	}
	for i := 0; i < 3000; i++ {
		raw, err := json.Marshal(map[string]any{"v": gen(0)})
		if err != nil {
			t.Fatal(err)
		}
		checkDecodeJSON(t, raw)
		bad := []byte(string(raw))
		switch rnd.IntN(3) {
		case 0:
			bad = bad[:rnd.IntN(len(bad))]
		case 1:
			bad[rnd.IntN(len(bad))] = byte(rnd.IntN(256))
		default:
			p := rnd.IntN(len(bad))
			bad = append(bad[:p], append([]byte(`\u`), bad[p:]...)...)
		}
		checkDecodeJSON(t, bad)
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,"x",null,true]}`, `"\ud800\udc00"`, "\"\xff\"", `[1e5,-0.5]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) { checkDecodeJSON(t, in) })
}
