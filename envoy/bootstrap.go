package envoy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// Bootstrap defaults.
const (
	DefaultAdminAddress = "127.0.0.1:9901"
	DefaultNodeCluster  = "gatehouse"
	// RegexProgramSizeLimit is the RE2 program size Envoy accepts, raised in
	// the bootstrap from Envoy's default of 100 (runtime key
	// re2.max_program_size.error_level): path templates with parameters
	// become regexes whose size grows with the template's length.
	RegexProgramSizeLimit = 20000
)

// BootstrapOptions describe a gateway's Envoy.
type BootstrapOptions struct {
	// NodeID is the gateway's node id (NodeID(tenant, gateway)); required.
	NodeID string
	// Cluster is the Envoy node's cluster (default "gatehouse").
	Cluster string
	// XDSAddress is the control plane's xDS gRPC address, "host:port";
	// required. It is reached over HTTP/2: plaintext, or TLS with XDSTLS.
	XDSAddress string
	// XDSTLS, when set, makes the xDS cluster speak TLS (transport socket
	// envoy.transport_sockets.tls, ALPN h2): the control plane's
	// certificate verified against CAPEM (inline), CAFile or else
	// DefaultUpstreamCAFile, and ServerName (default the host of
	// XDSAddress) as a DNS or IP subject alternative name, sent as SNI
	// when it is a name; CertFile and KeyFile (files on the Envoy host,
	// both or neither) are the client certificate Envoy presents. nil:
	// plaintext.
	XDSTLS *TLSClient
	// AdminAddress is Envoy's admin listener, "host:port" on a loopback
	// address (default 127.0.0.1:9901): the admin API is unauthenticated.
	AdminAddress string
	// Credential is the gateway's credential (required): Envoy sends it on
	// the ADS stream as "authorization: Bearer …" (initial_metadata), and
	// the control plane serves it this gateway's node id only. It makes the
	// bootstrap a secret.
	Credential string
}

// Bootstrap returns an Envoy bootstrap (YAML) for a gateway: the node id and
// cluster, listeners and clusters from ADS over gRPC (state of the world,
// API v3) to a static control-plane cluster speaking HTTP/2 (over TLS with
// XDSTLS), with the
// gateway credential in the ADS stream's initial_metadata, the admin
// listener on loopback, and a runtime layer raising the RE2 program size
// limit (RegexProgramSizeLimit).
func Bootstrap(opts BootstrapOptions) ([]byte, error) {
	tid, gw, err := ParseNodeID(opts.NodeID)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if opts.Cluster == "" {
		opts.Cluster = DefaultNodeCluster
	}
	if opts.AdminAddress == "" {
		opts.AdminAddress = DefaultAdminAddress
	}
	xdsHost, xdsPort, xdsIP, err := parseHostPort("bootstrap: xds address", opts.XDSAddress)
	if err != nil {
		return nil, err
	}
	authorization, err := bearerValue(opts.Credential)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	adminHost, adminPort, adminIP, err := parseHostPort("bootstrap: admin address", opts.AdminAddress)
	if err != nil {
		return nil, err
	}
	if a, _ := netip.ParseAddr(adminHost); !adminIP || !a.IsLoopback() {
		return nil, fmt.Errorf("bootstrap: admin address %q must be a loopback IP address", opts.AdminAddress)
	}
	xds := staticCluster(XDSClusterName, xdsHost, xdsPort, xdsIP, time.Second)
	if xds.TypedExtensionProtocolOptions, err = http2Options(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	transport := "plaintext HTTP/2"
	if opts.XDSTLS != nil {
		if xds.TransportSocket, err = grpcClusterTLS(opts.XDSTLS, xdsHost); err != nil {
			return nil, fmt.Errorf("bootstrap: xds %w", err)
		}
		name, _ := opts.XDSTLS.serverName(xdsHost)
		transport = fmt.Sprintf("TLS, verifying %q", name)
		if opts.XDSTLS.CertFile != "" {
			transport += " and presenting a client certificate"
		}
	}
	runtime, err := structpb.NewStruct(map[string]any{"re2.max_program_size.error_level": RegexProgramSizeLimit})
	if err != nil {
		return nil, fmt.Errorf("bootstrap: runtime layer: %w", err)
	}
	b := &bootstrapv3.Bootstrap{
		Node:  &corev3.Node{Id: opts.NodeID, Cluster: opts.Cluster},
		Admin: &bootstrapv3.Admin{Address: socketAddress(adminHost, adminPort)},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:                   corev3.ApiConfigSource_GRPC,
				TransportApiVersion:       corev3.ApiVersion_V3,
				SetNodeOnFirstMessageOnly: true,
				GrpcServices: []*corev3.GrpcService{{
					TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
						EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: XDSClusterName}},
					InitialMetadata: []*corev3.HeaderValue{{Key: CredentialMetadataKey, Value: authorization}},
				}},
			},
			CdsConfig: adsConfigSource(),
			LdsConfig: adsConfigSource(),
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{xds}},
		LayeredRuntime: &bootstrapv3.LayeredRuntime{Layers: []*bootstrapv3.RuntimeLayer{{
			Name:           "gatehouse",
			LayerSpecifier: &bootstrapv3.RuntimeLayer_StaticLayer{StaticLayer: runtime},
		}}},
	}
	if err := validateMessage(b); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: encode: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("bootstrap: convert to YAML: %w", err)
	}
	blockStyle(&doc)
	doc.HeadComment = fmt.Sprintf("Envoy bootstrap of Gatehouse gateway %q of tenant %q (generated).\n"+
		"Listeners, routes and clusters come from the control plane over ADS (%s).\n"+
		"It holds the gateway's credential (ADS initial_metadata authorization): keep it secret.", gw, tid, transport)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("bootstrap: encode YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("bootstrap: encode YAML: %w", err)
	}
	return buf.Bytes(), nil
}

// blockStyle turns the flow-style nodes of a document parsed from JSON into
// block style, and drops quotes YAML does not need.
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		// Keep strings that would read back as another type quoted.
		var v any
		if yaml.Unmarshal([]byte(n.Value), &v) != nil {
			n.Style = yaml.DoubleQuotedStyle
		} else if _, ok := v.(string); !ok {
			n.Style = yaml.DoubleQuotedStyle
		}
	}
}

// bearerValue is the authorization value of a gateway credential.
func bearerValue(credential string) (string, error) {
	if credential == "" {
		return "", errors.New("a gateway credential is required")
	}
	for _, r := range credential {
		if r <= ' ' || r >= 0x7f {
			return "", errors.New("the gateway credential must be printable ASCII without spaces")
		}
	}
	return "Bearer " + credential, nil
}

// GRPCBootstrapOptions describe a proxyless gRPC gateway's xDS client.
type GRPCBootstrapOptions struct {
	// NodeID is the gateway's node id (NodeID(tenant, gateway)); required.
	NodeID string
	// Cluster is the node's cluster (default "gatehouse").
	Cluster string
	// XDSAddress is the control plane's xDS gRPC address, "host:port";
	// required. It is reached over plaintext HTTP/2, or TLS with XDSTLS.
	XDSAddress string
	// XDSTLS, when set, makes the xDS channel use TLS: the "tls" object of
	// the "gatehouse" channel credentials (see package envoy/xdscreds),
	// with CAPEM inline as ca_pem. The client verifies the control plane
	// against CAPEM, CAFile or else the system roots, and ServerName
	// (default the host of XDSAddress); CertFile and KeyFile (files on the
	// client's host, both or neither) are its client certificate. nil:
	// plaintext.
	XDSTLS *TLSClient
	// Credential is the gateway's credential (required), sent as
	// "authorization: Bearer …" through the channel credentials type
	// "gatehouse" (package envoy/xdscreds). It makes the bootstrap a secret.
	Credential string
}

// GRPCBootstrap returns the xDS bootstrap (JSON) of a proxyless gRPC
// gateway's clients and servers: the control plane with channel
// credentials of type "gatehouse" holding the gateway credential and, with
// XDSTLS, the TLS settings (grpc-go
// programs import envoy/xdscreds to register it; without it grpc-go
// refuses the bootstrap rather than connect without the credential), the
// node id and the server listener template.
func GRPCBootstrap(opts GRPCBootstrapOptions) ([]byte, error) {
	if _, _, err := ParseNodeID(opts.NodeID); err != nil {
		return nil, fmt.Errorf("grpc bootstrap: %w", err)
	}
	if _, _, _, err := parseHostPort("grpc bootstrap: xds address", opts.XDSAddress); err != nil {
		return nil, err
	}
	if _, err := bearerValue(opts.Credential); err != nil {
		return nil, fmt.Errorf("grpc bootstrap: %w", err)
	}
	if err := opts.XDSTLS.validate(); err != nil {
		return nil, fmt.Errorf("grpc bootstrap: xds %w", err)
	}
	if opts.Cluster == "" {
		opts.Cluster = DefaultNodeCluster
	}
	// xdscreds.Config, spelled out: importing xdscreds would register its
	// grpc-go plugin in every program using this package.
	type tlsConfig struct {
		CAPEM      string `json:"ca_pem,omitempty"`
		CAFile     string `json:"ca_file,omitempty"`
		ServerName string `json:"server_name,omitempty"`
		CertFile   string `json:"cert_file,omitempty"`
		KeyFile    string `json:"key_file,omitempty"`
	}
	type credsConfig struct {
		Credential string     `json:"credential"`
		TLS        *tlsConfig `json:"tls,omitempty"`
	}
	type creds struct {
		Type   string      `json:"type"`
		Config credsConfig `json:"config"`
	}
	cfg := credsConfig{Credential: opts.Credential}
	if t := opts.XDSTLS; t != nil {
		cfg.TLS = &tlsConfig{CAPEM: t.CAPEM, CAFile: t.CAFile, ServerName: t.ServerName, CertFile: t.CertFile, KeyFile: t.KeyFile}
		if t.CAPEM != "" {
			cfg.TLS.CAFile = "" // CAPEM wins
		}
	}
	doc := map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      opts.XDSAddress,
			"channel_creds":   []creds{{Type: GRPCCredentialsType, Config: cfg}},
			"server_features": []string{"xds_v3"},
		}},
		"node":                                   map[string]string{"id": opts.NodeID, "cluster": opts.Cluster},
		"server_listener_resource_name_template": "grpc/server?xds.resource.listening_address=%s",
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("grpc bootstrap: %w", err)
	}
	return append(out, '\n'), nil
}

// GRPCCredentialsType is the xDS bootstrap channel_creds type that carries
// a gateway credential (registered by package envoy/xdscreds).
const GRPCCredentialsType = "gatehouse"
