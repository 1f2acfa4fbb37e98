package authzbench

import (
	"net/url"
	"strconv"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// pluginVersion is input.version of a v3 CheckRequest in the plugin.
var pluginVersion = ast.NewObject(
	[2]*ast.Term{ast.StringTerm("ext_authz"), ast.StringTerm("v3")},
	[2]*ast.Term{ast.StringTerm("encoding"), ast.StringTerm("protojson")},
)

// PluginInput is the plugin's input document of a v3 CheckRequest
// (envoyauth.RequestToInput with body parsing on and no gRPC descriptor
// set): the message as a map with JSON field names, version, parsed_path
// (unescaped, split on "/"), parsed_query, parsed_body and truncated_body,
// and source_principal when the source has one.
func PluginInput(req *authv3.CheckRequest) (map[string]any, error) {
	input := messageMap(req.ProtoReflect())
	h := req.GetAttributes().GetRequest().GetHttp()
	input["version"] = pluginVersion
	rawPath, rawQuery, _ := strings.Cut(h.GetPath(), "?")
	path, err := url.PathUnescape(rawPath)
	if err != nil {
		return nil, err
	}
	input["parsed_path"] = strings.Split(strings.TrimLeft(path, "/"), "/")
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, err
	}
	parsedQuery := make(map[string]any, len(query))
	for k, vs := range query {
		parsedQuery[k] = vs
	}
	input["parsed_query"] = parsedQuery
	body, truncated, err := pluginBody(h.GetHeaders(), h.GetBody(), h.GetRawBody())
	if err != nil {
		return nil, err
	}
	input["parsed_body"] = body
	input["truncated_body"] = truncated
	if p := req.GetAttributes().GetSource().GetPrincipal(); p != "" {
		input["source_principal"] = p
	}
	return input, nil
}

// messageMap is a message as nested maps, lists and scalar values, keyed
// by JSON field names (only the fields set); a google.protobuf.Struct is
// its AsMap.
func messageMap(msg protoreflect.Message) map[string]any {
	if s, ok := msg.Interface().(interface{ AsMap() map[string]any }); ok {
		return s.AsMap()
	}
	out := make(map[string]any, msg.Descriptor().Fields().Len())
	msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			m := v.Map()
			vm := make(map[string]any, m.Len())
			isMsg := fd.MapValue().Kind() == protoreflect.MessageKind
			m.Range(func(k protoreflect.MapKey, e protoreflect.Value) bool {
				vm[k.String()] = fieldValue(e, isMsg)
				return true
			})
			out[fd.JSONName()] = vm
		case fd.IsList():
			l := v.List()
			vl := make([]any, l.Len())
			isMsg := fd.Kind() == protoreflect.MessageKind
			for i := range vl {
				vl[i] = fieldValue(l.Get(i), isMsg)
			}
			out[fd.JSONName()] = vl
		default:
			out[fd.JSONName()] = fieldValue(v, fd.Kind() == protoreflect.MessageKind)
		}
		return true
	})
	return out
}

func fieldValue(v protoreflect.Value, isMsg bool) any {
	if isMsg {
		return messageMap(v.Message())
	}
	return v.Interface()
}

// pluginBody parses a JSON or form body as the plugin does (truncated
// when Envoy says so or when shorter than its Content-Length); other
// content types are not parsed (the plugin's gRPC and multipart parsing
// is not needed by the fixture, whose requests have no body).
func pluginBody(headers map[string]string, body string, raw []byte) (any, bool, error) {
	if headers["x-envoy-auth-partial-body"] == "true" {
		return nil, true, nil
	}
	ct, ok := headers["content-type"]
	if !ok {
		return nil, false, nil
	}
	if body == "" {
		body = string(raw)
	}
	json := strings.Contains(ct, "application/json")
	form := strings.Contains(ct, "application/x-www-form-urlencoded")
	if body == "" || (!json && !form) {
		return nil, false, nil
	}
	if cl, ok := headers["content-length"]; ok {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil {
			return nil, false, err
		}
		if n != -1 && n > int64(len(body)) {
			return nil, true, nil
		}
	}
	if form {
		v, err := url.ParseQuery(body)
		return map[string][]string(v), false, err
	}
	var data any
	if err := util.UnmarshalJSON([]byte(body), &data); err != nil {
		return nil, false, err
	}
	return data, false, nil
}
