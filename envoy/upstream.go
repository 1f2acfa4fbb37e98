package envoy

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// upstream is a parsed service URL.
type upstream struct {
	tls bool
	// host is the DNS name or IP literal (without brackets); ip says which.
	host string
	ip   bool
	port uint32
	// authority is the Host header for the upstream: the URL's host[:port].
	authority string
	// basePath is the URL's path without a trailing "/" ("" for none).
	basePath string
}

// parseUpstream parses a service URL: http or https, a host, an optional
// port (default 80/443) and an optional base path.
func parseUpstream(raw string) (upstream, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return upstream{}, fmt.Errorf("url %q: %w", raw, err)
	}
	var up upstream
	switch u.Scheme {
	case "http":
		up.port = 80
	case "https":
		up.tls, up.port = true, 443
	default:
		return upstream{}, fmt.Errorf("url %q: scheme must be http or https", raw)
	}
	switch {
	case u.Hostname() == "":
		return upstream{}, fmt.Errorf("url %q: no host", raw)
	case u.User != nil, u.RawQuery != "", u.Fragment != "":
		return upstream{}, fmt.Errorf("url %q: user information, query and fragment are not supported", raw)
	}
	up.host = strings.ToLower(u.Hostname())
	if a, err := netip.ParseAddr(up.host); err == nil {
		up.ip, up.host = true, a.Unmap().String()
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return upstream{}, fmt.Errorf("url %q: invalid port %q", raw, p)
		}
		up.port = uint32(n)
	}
	up.authority = strings.ToLower(u.Host)
	up.basePath = strings.TrimSuffix(u.EscapedPath(), "/")
	return up, nil
}

// parseHostPort parses a "host:port" address.
func parseHostPort(what, addr string) (host string, port uint32, ip bool, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, false, fmt.Errorf("%s %q: %w", what, addr, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", 0, false, fmt.Errorf("%s %q: invalid port", what, addr)
	}
	if h == "" {
		return "", 0, false, fmt.Errorf("%s %q: no host", what, addr)
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().String(), uint32(n), true, nil
	}
	return strings.ToLower(h), uint32(n), false, nil
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol: corev3.SocketAddress_TCP, Address: host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

func lbEndpoint(host string, port uint32) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
		Endpoint: &endpointv3.Endpoint{Address: socketAddress(host, port)}}}
}

// staticCluster is a cluster with its endpoint inline: STATIC for an IP
// literal, STRICT_DNS (re-resolved, every address used) for a name.
func staticCluster(name, host string, port uint32, ip bool, connectTimeout time.Duration) *clusterv3.Cluster {
	typ := clusterv3.Cluster_STRICT_DNS
	if ip {
		typ = clusterv3.Cluster_STATIC
	}
	c := &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(connectTimeout),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: typ},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint(host, port)}}},
		},
	}
	if !ip {
		c.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
	}
	return c
}

// http2Options makes a cluster speak HTTP/2 (h2c, or h2 over its TLS).
func http2Options() (map[string]*anypb.Any, error) {
	a, err := anypb.New(&upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}})
	if err != nil {
		return nil, fmt.Errorf("pack HttpProtocolOptions: %w", err)
	}
	return map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": a}, nil
}

// upstreamTLS is the transport socket of an https upstream: SNI (for a DNS
// name), certificate verification against caFile and the upstream's name
// (or IP) in the certificate's subject alternative names.
func upstreamTLS(up upstream, caFile string) (*corev3.TransportSocket, error) {
	return upstreamTLSSocket(tlsPeer{name: up.host, ip: up.ip,
		ca: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: caFile}}})
}

// serviceCluster is an Envoy gateway's cluster for a service upstream.
func serviceCluster(serviceID string, up upstream, opts *TranslateOptions) (*clusterv3.Cluster, error) {
	c := staticCluster(ServiceClusterName(serviceID), up.host, up.port, up.ip, opts.UpstreamConnectTimeout)
	if up.tls {
		ts, err := upstreamTLS(up, opts.UpstreamCAFile)
		if err != nil {
			return nil, err
		}
		c.TransportSocket = ts
	}
	return c, nil
}

// authorizerCluster is the HTTP/2 cluster of the ext_authz gRPC server,
// over TLS when AuthorizerTLS is set.
func authorizerCluster(opts *TranslateOptions) (*clusterv3.Cluster, error) {
	host, port, ip, err := parseHostPort("authorizer address", opts.AuthorizerAddress)
	if err != nil {
		return nil, err
	}
	c := staticCluster(AuthorizerClusterName, host, port, ip, opts.AuthorizerConnectTimeout)
	if c.TypedExtensionProtocolOptions, err = http2Options(); err != nil {
		return nil, err
	}
	if opts.AuthorizerTLS != nil {
		if c.TransportSocket, err = grpcClusterTLS(opts.AuthorizerTLS, host); err != nil {
			return nil, fmt.Errorf("authorizer %w", err)
		}
	}
	return c, nil
}

// edsCluster is a proxyless gRPC gateway's cluster: endpoints from EDS over
// ADS, round robin (a policy grpc-go supports).
func edsCluster(name string, connectTimeout time.Duration) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(connectTimeout),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource()},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
}

// loadAssignment is the EDS resource of an upstream: one locality with
// weight 1 (grpc-go ignores localities without a weight).
func loadAssignment(name string, up upstream) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			Locality:            &corev3.Locality{Region: "gatehouse"},
			LoadBalancingWeight: wrapperspb.UInt32(1),
			LbEndpoints:         []*endpointv3.LbEndpoint{lbEndpoint(up.host, up.port)},
		}},
	}
}

func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}
