package envoy

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc/peer"
)

// XDSStatus is what the control plane knows of a gateway's xDS clients. It
// is JSON-serialisable and shown as the gateway's status.xds.
type XDSStatus struct {
	NodeID string `json:"node_id"`
	// Version is the snapshot version served to the gateway's nodes ("" if
	// none was built yet), built from BundleRevision at UpdatedAt.
	Version        string     `json:"version,omitempty"`
	BundleRevision int64      `json:"bundle_revision,omitempty"`
	UpdatedAt      *time.Time `json:"updated_at,omitempty"`
	// Error is why the latest configuration could not be served (the
	// previous snapshot, if any, still is).
	Error string `json:"error,omitempty"`
	// Nodes are the xDS streams connected now with this node id.
	Nodes []NodeStatus `json:"nodes"`
	// LastNack is the most recent rejection by any node of this gateway,
	// kept after that node disconnects.
	LastNack *NackStatus `json:"last_nack,omitempty"`
}

// NodeStatus is one connected xDS stream.
type NodeStatus struct {
	Stream      int64     `json:"stream"`
	Peer        string    `json:"peer,omitempty"`
	Cluster     string    `json:"cluster,omitempty"`
	UserAgent   string    `json:"user_agent,omitempty"`
	Delta       bool      `json:"delta,omitempty"`
	ConnectedAt time.Time `json:"connected_at"`
	// Resources are by type URL.
	Resources map[string]*ResourceStatus `json:"resources"`
}

// ResourceStatus is a stream's state for one resource type.
type ResourceStatus struct {
	// SentVersion is the last version sent.
	SentVersion  string      `json:"sent_version,omitempty"`
	AckedVersion string      `json:"acked_version,omitempty"`
	AckedAt      *time.Time  `json:"acked_at,omitempty"`
	LastNack     *NackStatus `json:"last_nack,omitempty"`
}

// NackStatus is a rejected response.
type NackStatus struct {
	TypeURL string `json:"type_url"`
	// Version is the version that was rejected.
	Version string    `json:"version"`
	Error   string    `json:"error"`
	At      time.Time `json:"at"`
}

// sent is the latest response of a type on a stream.
type sent struct{ nonce, version string }

type streamState struct {
	NodeStatus
	node string
	sent map[string]sent
}

// tracker follows xDS streams through the server callbacks: who is
// connected, what was sent, ACKed and NACKed.
type tracker struct {
	now func() time.Time

	mu       sync.Mutex
	streams  map[int64]*streamState
	lastNack map[string]*NackStatus // by node id
}

func newTracker() *tracker {
	return &tracker{now: time.Now, streams: map[int64]*streamState{}, lastNack: map[string]*NackStatus{}}
}

func (t *tracker) callbacks() server.CallbackFuncs {
	return server.CallbackFuncs{
		StreamOpenFunc:         func(ctx context.Context, id int64, _ string) error { t.open(ctx, id, false); return nil },
		StreamClosedFunc:       func(id int64, _ *corev3.Node) { t.close(id) },
		DeltaStreamOpenFunc:    func(ctx context.Context, id int64, _ string) error { t.open(ctx, id, true); return nil },
		DeltaStreamClosedFunc:  func(id int64, _ *corev3.Node) { t.close(id) },
		StreamRequestFunc:      t.request,
		StreamResponseFunc:     t.response,
		StreamDeltaRequestFunc: t.deltaRequest,
		StreamDeltaResponseFunc: func(id int64, _ *discoverygrpc.DeltaDiscoveryRequest, resp *discoverygrpc.DeltaDiscoveryResponse) {
			t.sent(id, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
		},
	}
}

func (t *tracker) open(ctx context.Context, id int64, delta bool) {
	st := &streamState{sent: map[string]sent{}}
	st.Stream, st.Delta, st.ConnectedAt = id, delta, t.now().UTC()
	st.Resources = map[string]*ResourceStatus{}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		st.Peer = p.Addr.String()
	}
	t.mu.Lock()
	t.streams[id] = st
	t.mu.Unlock()
}

func (t *tracker) close(id int64) {
	t.mu.Lock()
	delete(t.streams, id)
	t.mu.Unlock()
}

// identify records the stream's node from a request (go-control-plane
// copies the first request's node into later SotW requests).
func (st *streamState) identify(n *corev3.Node) {
	if n == nil || st.node != "" {
		return
	}
	st.node, st.Cluster = n.GetId(), n.GetCluster()
	st.UserAgent = n.GetUserAgentName()
	if v := n.GetUserAgentVersion(); v != "" {
		st.UserAgent += "/" + v
	}
	if bv := n.GetUserAgentBuildVersion(); bv != nil && bv.GetVersion() != nil {
		sv := bv.GetVersion()
		st.UserAgent += "/" + fmt.Sprintf("%d.%d.%d", sv.GetMajorNumber(), sv.GetMinorNumber(), sv.GetPatch())
	}
}

func (st *streamState) resource(typeURL string) *ResourceStatus {
	r := st.Resources[typeURL]
	if r == nil {
		r = &ResourceStatus{}
		st.Resources[typeURL] = r
	}
	return r
}

// request classifies a SotW request: a subscription (no nonce), an ACK or a
// NACK (error_detail set) of the latest response of its type. Requests with
// an older nonce are ignored, as the server ignores them.
//
// After a NACK, version_info still names the last accepted version, so the
// snapshot cache would answer at once with the same rejected snapshot, and a
// client that rejects it again would loop. The request's version_info is
// therefore set to the rejected version: the cache then holds the watch
// until a new version exists. (The server passes this same request to the
// cache right after the callback.)
func (t *tracker) request(id int64, req *discoverygrpc.DiscoveryRequest) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[id]
	if st == nil {
		return nil
	}
	st.identify(req.GetNode())
	nonce := req.GetResponseNonce()
	last, ok := st.sent[req.GetTypeUrl()]
	if nonce == "" || !ok || nonce != last.nonce {
		return nil
	}
	r := st.resource(req.GetTypeUrl())
	now := t.now().UTC()
	if d := req.GetErrorDetail(); d != nil {
		n := &NackStatus{TypeURL: req.GetTypeUrl(), Version: last.version, Error: d.GetMessage(), At: now}
		r.LastNack = n
		t.lastNack[st.node] = n
		req.VersionInfo = last.version
		return nil
	}
	r.AckedVersion, r.AckedAt = req.GetVersionInfo(), &now
	return nil
}

// deltaRequest classifies a delta request like request does; delta ACKs
// carry no version, so the version is the one sent with the nonce. (The
// delta cache does not resend rejected resources, so nothing is rewritten.)
func (t *tracker) deltaRequest(id int64, req *discoverygrpc.DeltaDiscoveryRequest) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[id]
	if st == nil {
		return nil
	}
	st.identify(req.GetNode())
	last, ok := st.sent[req.GetTypeUrl()]
	if req.GetResponseNonce() == "" || !ok || req.GetResponseNonce() != last.nonce {
		return nil
	}
	r := st.resource(req.GetTypeUrl())
	now := t.now().UTC()
	if d := req.GetErrorDetail(); d != nil {
		n := &NackStatus{TypeURL: req.GetTypeUrl(), Version: last.version, Error: d.GetMessage(), At: now}
		r.LastNack = n
		t.lastNack[st.node] = n
		return nil
	}
	r.AckedVersion, r.AckedAt = last.version, &now
	return nil
}

func (t *tracker) response(_ context.Context, id int64, _ *discoverygrpc.DiscoveryRequest, resp *discoverygrpc.DiscoveryResponse) {
	t.sent(id, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
}

func (t *tracker) sent(id int64, typeURL, nonce, version string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[id]
	if st == nil {
		return
	}
	st.sent[typeURL] = sent{nonce: nonce, version: version}
	st.resource(typeURL).SentVersion = version
}

// node returns copies of the streams connected with nodeID, oldest first,
// and its last NACK.
func (t *tracker) node(nodeID string) ([]NodeStatus, *NackStatus) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := []NodeStatus{}
	for _, st := range t.streams {
		if st.node != nodeID {
			continue
		}
		ns := st.NodeStatus
		ns.Resources = make(map[string]*ResourceStatus, len(st.Resources))
		for k, r := range st.Resources {
			c := *r
			if r.LastNack != nil {
				n := *r.LastNack
				c.LastNack = &n
			}
			ns.Resources[k] = &c
		}
		out = append(out, ns)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Stream < out[j].Stream })
	var last *NackStatus
	if n := t.lastNack[nodeID]; n != nil {
		c := *n
		last = &c
	}
	return out, last
}

// connected reports whether any stream of nodeID is open.
func (t *tracker) connected(nodeID string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, st := range t.streams {
		if st.node == nodeID {
			return true
		}
	}
	return false
}

// forget drops a node's remembered NACK (its gateway is gone).
func (t *tracker) forget(nodeID string) {
	t.mu.Lock()
	delete(t.lastNack, nodeID)
	t.mu.Unlock()
}
