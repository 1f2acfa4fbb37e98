package envoy

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// adsClient is a state-of-the-world ADS client that behaves like Envoy: it
// sends its node on the first request, subscribes to CDS and LDS with no
// names (wildcard) and to EDS and RDS by name, and answers every response
// with an ACK (or a NACK) carrying its nonce.
type adsClient struct {
	cc      *grpc.ClientConn
	stream  discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node    *corev3.Node
	recv    chan recvResult
	pending map[string][]*discoverygrpc.DiscoveryResponse
	names   map[string][]string
	acked   map[string]string
	nonce   map[string]string
	// close ends the stream (idempotent).
	close func()
}

type recvResult struct {
	resp *discoverygrpc.DiscoveryResponse
	err  error
}

// dialADS opens an ADS stream to addr as node nodeID, closed when the test
// ends. A non-empty token is sent as the stream's gateway credential, in
// the stream's initial metadata as Envoy sends its initial_metadata.
func dialADS(t testing.TB, addr, nodeID, token string) *adsClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ctx = withCredential(ctx, token)
	s, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		cc.Close()
		t.Fatal(err)
	}
	c := &adsClient{cc: cc, stream: s, recv: make(chan recvResult, 64),
		node:    &corev3.Node{Id: nodeID, Cluster: "test", UserAgentName: "envoy"},
		pending: map[string][]*discoverygrpc.DiscoveryResponse{}, names: map[string][]string{},
		acked: map[string]string{}, nonce: map[string]string{}}
	c.close = sync.OnceFunc(func() {
		_ = s.CloseSend()
		cancel()
		cc.Close()
	})
	t.Cleanup(c.close)
	go func() {
		for {
			r, err := s.Recv()
			c.recv <- recvResult{r, err}
			if err != nil {
				return
			}
		}
	}()
	return c
}

// subscribe sends the first request of a type; nil names is a wildcard.
func (c *adsClient) subscribe(typeURL string, names []string) error {
	c.names[typeURL] = names
	req := &discoverygrpc.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names,
		VersionInfo: c.acked[typeURL], ResponseNonce: c.nonce[typeURL]}
	if c.node != nil {
		req.Node, c.node = c.node, nil
	}
	return c.stream.Send(req)
}

// next returns the next response of typeURL (buffering the others), or an
// error after timeout.
func (c *adsClient) next(typeURL string, timeout time.Duration) (*discoverygrpc.DiscoveryResponse, error) {
	if q := c.pending[typeURL]; len(q) > 0 {
		c.pending[typeURL] = q[1:]
		return q[0], nil
	}
	deadline := time.After(timeout)
	for {
		select {
		case r := <-c.recv:
			if r.err != nil {
				return nil, r.err
			}
			c.nonce[r.resp.GetTypeUrl()] = r.resp.GetNonce()
			if r.resp.GetTypeUrl() == typeURL {
				return r.resp, nil
			}
			c.pending[r.resp.GetTypeUrl()] = append(c.pending[r.resp.GetTypeUrl()], r.resp)
		case <-deadline:
			return nil, fmt.Errorf("no %s response within %s", typeURL, timeout)
		}
	}
}

// quiet reports the number of responses received within d.
func (c *adsClient) quiet(d time.Duration) int {
	n := 0
	deadline := time.After(d)
	for {
		select {
		case r := <-c.recv:
			if r.err != nil {
				return n
			}
			c.nonce[r.resp.GetTypeUrl()] = r.resp.GetNonce()
			c.pending[r.resp.GetTypeUrl()] = append(c.pending[r.resp.GetTypeUrl()], r.resp)
			n++
		case <-deadline:
			return n
		}
	}
}

func (c *adsClient) ack(r *discoverygrpc.DiscoveryResponse) error {
	c.acked[r.GetTypeUrl()] = r.GetVersionInfo()
	return c.stream.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResourceNames: c.names[r.GetTypeUrl()],
		VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})
}

// nack rejects r: version_info stays the last accepted version.
func (c *adsClient) nack(r *discoverygrpc.DiscoveryResponse, msg string) error {
	return c.stream.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResourceNames: c.names[r.GetTypeUrl()],
		VersionInfo: c.acked[r.GetTypeUrl()], ResponseNonce: r.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: msg}})
}

// unpack decodes a response's resources.
func unpack[T proto.Message](r *discoverygrpc.DiscoveryResponse, newT func() T) ([]T, error) {
	out := make([]T, 0, len(r.GetResources()))
	for _, a := range r.GetResources() {
		m := newT()
		if err := a.UnmarshalTo(m); err != nil {
			return nil, fmt.Errorf("unpack %s: %w", a.GetTypeUrl(), err)
		}
		out = append(out, m)
	}
	return out, nil
}

// withCredential sends token (if any) as the gateway credential of the
// calls made with ctx.
func withCredential(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}
