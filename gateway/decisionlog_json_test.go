package gateway

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"testing"
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
	in := RequestFromCheck(check("POST", "/pets/7?limit=10&x=%3Cy%3E", map[string]string{"x-key": "good", "user-agent": "t/1"})).Input
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
