package store_test

import (
	"bytes"
	"encoding/json"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/store"
)

// referenceFields reads the decision fields the slow, obvious way, as
// jsonb sees the document: objects decoded member by member (exact names,
// the last of duplicates), values by their JSON type.
func referenceFields(data []byte) store.DecisionFields {
	var d store.DecisionFields
	obj := func(raw json.RawMessage) map[string]json.RawMessage {
		var m map[string]json.RawMessage
		if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &m) != nil {
			return nil
		}
		return m
	}
	str := func(raw json.RawMessage) string {
		var s string
		if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return ""
		}
		return s
	}
	top := obj(bytes.TrimSpace(data))
	d.DecisionID = str(top["decision_id"])
	if res := obj(top["result"]); res != nil {
		switch string(res["allowed"]) {
		case "true":
			d.Outcome = store.OutcomeAllowed
		case "false":
			d.Outcome = store.OutcomeDenied
		}
		if raw := string(res["http_status"]); raw != "" && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
			if r, ok := new(big.Rat).SetString(raw); ok && r.IsInt() && r.Num().IsInt64() {
				if n := r.Num().Int64(); n > -1e9 && n < 1e9 {
					d.HTTPStatus = int(n)
				}
			}
		}
		d.APIID, d.PolicyID, d.TokenReason = str(res["api_id"]), str(res["policy_id"]), str(res["token_reason"])
	}
	d.Subject = str(obj(obj(obj(top["input"])["gatehouse"])["token"])["subject"])
	return d
}

func TestParseDecisionFields(t *testing.T) {
	for _, c := range []struct {
		doc  string
		want store.DecisionFields
	}{
		{`{"decision_id":"d","result":{"allowed":false,"http_status":403,"api_id":"a","policy_id":"p"},"input":{"gatehouse":{"token":{"subject":"s"}}}}`,
			store.DecisionFields{DecisionID: "d", Outcome: store.OutcomeDenied, HTTPStatus: 403, APIID: "a", PolicyID: "p", Subject: "s"}},
		{`{"result":{"allowed":false,"http_status":401,"token_reason":"expired"},"input":{"gatehouse":{"token":{"present":true,"valid":false}}}}`,
			store.DecisionFields{Outcome: store.OutcomeDenied, HTTPStatus: 401, TokenReason: "expired"}},
		{` { "result" : { "allowed" : true , "http_status" : 4.03e2 } } `, store.DecisionFields{Outcome: store.OutcomeAllowed, HTTPStatus: 403}},
		{`{"result":{"http_status":403.5}}`, store.DecisionFields{}},
		{`{"result":{"http_status":-0}}`, store.DecisionFields{}},
		{`{"result":{"http_status":999999999}}`, store.DecisionFields{HTTPStatus: 999999999}},
		{`{"result":{"http_status":1000000000}}`, store.DecisionFields{}},
		{`{"result":{"http_status":1e999999999}}`, store.DecisionFields{}},
		{`{"result":{"http_status":"403","allowed":"true","api_id":1,"policy_id":null}}`, store.DecisionFields{}},
		{`{"result":{"api_id":"a"},"result":[1,{"api_id":"b"}]}`, store.DecisionFields{}},
		{`{"result":{"api_id":"a"},"result":{"policy_id":"p"}}`, store.DecisionFields{PolicyID: "p"}},
		{`{"result":{"API_ID":"a","Allowed":true}}`, store.DecisionFields{}},
		{`{"re\u0073ult":{"api_\u0069d":"\u00e9\n"}}`, store.DecisionFields{APIID: "é\n"}},
		{`{"input":{"gatehouse":{"token":{"subject":"x","subject":2}}}}`, store.DecisionFields{}},
		{`{"input":{"attributes":{"subject":"no","x":[{"gatehouse":{}}]},"gatehouse":{"tenant":"t","token":{"claims":{"subject":"no"},"subject":"yes"}}}}`,
			store.DecisionFields{Subject: "yes"}},
		{`{"decision_id":"a\"b\\"}`, store.DecisionFields{DecisionID: `a"b\`}},
		{`[{"decision_id":"d"}]`, store.DecisionFields{}},
		{`"decision_id"`, store.DecisionFields{}},
		{`{}`, store.DecisionFields{}},
	} {
		if got := store.ParseDecisionFields([]byte(c.doc)); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.doc, got, c.want)
		}
		if ref := referenceFields([]byte(c.doc)); ref != c.want {
			t.Errorf("the reference reads %s as %+v, want %+v", c.doc, ref, c.want)
		}
	}
}

// Generated documents: the fields at random depths and positions, of
// random types, duplicated, escaped, beside noise.
func TestParseDecisionFieldsAgreesWithTheReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var value func(depth int) string
	strs := []string{`"a"`, `"p1"`, `""`, `"\u0061"`, `"é"`, `"x\"y"`, `"\\"`}
	scalar := func() string {
		switch r.IntN(6) {
		case 0:
			return strs[r.IntN(len(strs))]
		case 1:
			return []string{"true", "false", "null"}[r.IntN(3)]
		case 2:
			return []string{"403", "403.0", "4.03e2", "-1", "1e12", "0.5", "200"}[r.IntN(7)]
		default:
			return strs[r.IntN(len(strs))]
		}
	}
	names := []string{"decision_id", "result", "allowed", "http_status", "api_id", "policy_id", "token_reason", "input", "gatehouse", "token", "subject", "Result", `api\u005fid`, "x"}
	value = func(depth int) string {
		if depth > 4 || r.IntN(3) == 0 {
			return scalar()
		}
		if r.IntN(5) == 0 {
			return "[" + value(depth+1) + "," + value(depth+1) + "]"
		}
		var members []string
		for range r.IntN(5) {
			members = append(members, `"`+names[r.IntN(len(names))]+`"`+strings.Repeat(" ", r.IntN(2))+":"+value(depth+1))
		}
		return "{" + strings.Join(members, ",") + "}"
	}
	for i := range 20000 {
		doc := value(0)
		if !json.Valid([]byte(doc)) {
			t.Fatalf("generated invalid JSON: %s", doc)
		}
		if got, want := store.ParseDecisionFields([]byte(doc)), referenceFields([]byte(doc)); got != want {
			t.Fatalf("document %d %s: %+v, reference %+v", i, doc, got, want)
		}
	}
}

func FuzzParseDecisionFields(f *testing.F) {
	f.Add([]byte(`{"decision_id":"d","result":{"allowed":false,"http_status":403,"api_id":"a","policy_id":"p"},"input":{"gatehouse":{"token":{"subject":"s"}}}}`))
	f.Add([]byte(`{"result":{"http_status":4.03e2},"result":{"allowed":true}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		if !json.Valid(doc) {
			store.ParseDecisionFields(doc) // must not panic
			return
		}
		if got, want := store.ParseDecisionFields(doc), referenceFields(doc); got != want {
			t.Fatalf("%s: %+v, reference %+v", doc, got, want)
		}
	})
}
