package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestAppendJSONMatchesEncodingJSON: the event encoder's JSON is the one
// encoding/json writes (sorted keys, the same number formats, invalid
// UTF-8 as U+FFFD), except that it does not escape <, >, & and U+2028/9.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	values := []any{
		nil, true, false, "", "plain", "quote\" backslash\\ nl\n cr\r tab\t ctl\x01\x1f del\x7f", "é ✓ 𝄞", "bad\xffutf8\xc3",
		0.0, -0.0, 1.0, -1.5, 1e20, 1e21, 1e-6, 1e-7, 123456789.125, float32(3.25), float32(1e-7), 42, int64(-7), int32(5), uint64(1 << 63), uint32(9),
		json.Number("12"), json.Number("-0.5e+10"), []string{"a", "b"}, []string(nil), map[string]string{"b": "2", "a": "1"},
		map[string]any{"z": 1.0, "a": []any{map[string]any{"y": nil, "x": "v"}, 2.5, "s"}, "m": map[string]any{}, "e": []any{}},
		map[string]any(nil), []any(nil), struct {
			A int `json:"a"`
		}{3},
	}
	for _, v := range values {
		var got bytes.Buffer
		if err := appendJSON(&got, v, 0); err != nil {
			t.Fatalf("%#v: %v", v, err)
		}
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%#v:\n got %s\nwant %s", v, got.Bytes(), want)
		}
	}
	var got bytes.Buffer
	appendJSON(&got, "<a&b>", 0)
	var s string
	if err := json.Unmarshal(got.Bytes(), &s); err != nil || s != "<a&b>" {
		t.Fatalf("%s: %q %v", got.Bytes(), s, err)
	}
	for _, bad := range []any{math.NaN(), math.Inf(1), json.Number("01"), json.Number("1e"), map[string]any{"x": []any{math.Inf(-1)}}} {
		var b bytes.Buffer
		if err := appendJSON(&b, bad, 0); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
	deep := any("leaf")
	for range 600 {
		deep = []any{deep}
	}
	if err := appendJSON(&bytes.Buffer{}, deep, 0); err == nil {
		t.Error("no error for 600 levels of nesting")
	}
	// A whole event parses back to what encoding/json makes of the same
	// input.
	in := RequestFromCheck(check("POST", "/pets/7?limit=10&x=%3Cy%3E", map[string]string{"x-key": "good", "user-agent": "t/1"})).Document()
	var a bytes.Buffer
	if err := appendJSON(&a, in, 0); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(in)
	var x, y any
	if json.Unmarshal(a.Bytes(), &x) != nil || json.Unmarshal(b, &y) != nil || !reflect.DeepEqual(x, y) {
		t.Fatalf("input document:\n%s\n%s", a.Bytes(), b)
	}
}

// TestMaskedInputEncodingMatchesMask: the encoder's masking while writing
// gives the bytes of mask's copy and the same erased and masked pointers,
// for inputs with and without credentials and of odd shapes.
func TestMaskedInputEncodingMatchesMask(t *testing.T) {
	l := NewDecisionLogger(DecisionLogOptions{Sink: &blockingSink{}, MaskedHeaders: []string{"X-Session"}, MaskedQueryParameters: []string{"Sig"}})
	defer l.Close(context.Background())
	inputs := []map[string]any{
		RequestFromCheck(check("GET", "/pets/7?access_token=a&Id_Token=b&keep=visible&%63ode=c&sig=d", map[string]string{
			"x-key": "good", "Authorization": "Basic g", "COOKIE": "session=h", "x-session": "l",
			":path": "/pets/7?api_key=m&keep=visible", "Referer": "https://app.example/cb?code=n&state=xyz", "x~odd/name": "v",
		})).Document(),
		RequestFromCheck(check("POST", "/a?x=1&tokens=2&mytoken=3", map[string]string{"x-key": "v"})).Document(),
		{"attributes": map[string]any{"request": map[string]any{"http": map[string]any{
			"path": "/cb?token=a&x=1#id_token=b&state=s", "fragment": "access_token=c&state=s", "query": "password=p",
			"headers": map[string]any{"authorization": "Bearer d", "referer": 7.0, ":path": []any{"/x?token=1"}},
		}}}, "parsed_query": map[string]any{"token": []any{"a"}, "x": []any{"1"}, "Key": []any{"k"}}},
		{"attributes": "not an object", "parsed_query": map[string]any{}},
		{"attributes": map[string]any{"request": map[string]any{"http": map[string]any{"path": 42.0, "headers": map[string]any{}}}}},
		{"attributes": map[string]any{"request": []any{"x"}}, "parsed_query": "x"},
		{},
	}
	for i, in := range inputs {
		out, wantErased, wantMasked := l.mask(in)
		var want, got bytes.Buffer
		if err := appendJSON(&want, out, 0); err != nil {
			t.Fatal(err)
		}
		v, err := ast.InterfaceToValue(in)
		if err != nil {
			t.Fatal(err)
		}
		erased, masked, err := l.appendMaskedInput(&got, v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Errorf("input %d:\n got %s\nwant %s", i, got.Bytes(), want.Bytes())
		}
		if fmt.Sprint(erased) != fmt.Sprint(wantErased) || fmt.Sprint(masked) != fmt.Sprint(wantMasked) {
			t.Errorf("input %d: erased %v masked %v, want %v %v", i, erased, masked, wantErased, wantMasked)
		}
	}
}

// TestTokenMemoEncodesAlike: with the encoder's token memo, an input whose
// token value was seen before is written exactly as without it, and the
// memo is bounded.
func TestTokenMemoEncodesAlike(t *testing.T) {
	l := NewDecisionLogger(DecisionLogOptions{Sink: &blockingSink{}})
	defer l.Close(context.Background())
	tok := ast.MustParseTerm(`{"present": true, "valid": true, "issuer": "https://idp", "subject": "u\u00e9",
		"claims": {"sub": "u\u00e9", "roles": ["a", "b"], "n": 1.5e3, "nested": {"x": [null, true]}}, "scopes": ["r"]}`).Value.(ast.Object)
	memo := tokenMemo{}
	for i, path := range []string{"/a?token=s3cr3t", "/b", "/a?token=s3cr3t"} {
		in := ast.MustParseTerm(`{"attributes": {"request": {"http": {"path": "` + path + `", "headers": {"authorization": "Bearer x"}}}},
			"gatehouse": {"tenant": "t", "token": {}}}`).Value.(ast.Object)
		in.Get(ast.StringTerm("gatehouse")).Value.(ast.Object).Insert(ast.StringTerm("token"), ast.NewTerm(tok))
		var want, got bytes.Buffer
		we, wm, err := l.appendMaskedInput(&want, in)
		if err != nil {
			t.Fatal(err)
		}
		ge, gm, err := l.appendMaskedInputMemo(&got, in, memo)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) || fmt.Sprint(ge, gm) != fmt.Sprint(we, wm) {
			t.Fatalf("input %d:\n got %s %v %v\nwant %s %v %v", i, got.Bytes(), ge, gm, want.Bytes(), we, wm)
		}
		if len(memo) != 1 {
			t.Fatalf("memo holds %d values", len(memo))
		}
	}
	for i := range maxTokenMemo + 1 {
		other := ast.MustParseTerm(fmt.Sprintf(`{"gatehouse": {"token": {"n": %d}}}`, i)).Value
		if _, _, err := l.appendMaskedInputMemo(&bytes.Buffer{}, other, memo); err != nil {
			t.Fatal(err)
		}
	}
	if len(memo) > maxTokenMemo {
		t.Fatalf("memo grew to %d values", len(memo))
	}
}
