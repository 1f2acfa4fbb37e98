package envoy

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
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

// streamKey names a stream: go-control-plane numbers SotW and delta streams
// separately, so their ids collide.
type streamKey struct {
	delta bool
	id    int64
}

// tracker follows xDS streams through the server callbacks: who is
// connected, what was sent, ACKed and NACKed.
type tracker struct {
	now func() time.Time
	// metrics counts pushes, ACKs and NACKs (nil until RegisterMetrics).
	metrics atomic.Pointer[xdsMetrics]

	mu       sync.Mutex
	streams  map[streamKey]*streamState
	lastNack map[string]*NackStatus // by node id
}

func newTracker() *tracker {
	return &tracker{now: time.Now, streams: map[streamKey]*streamState{}, lastNack: map[string]*NackStatus{}}
}

func (t *tracker) callbacks() server.CallbackFuncs {
	return server.CallbackFuncs{
		StreamOpenFunc: func(ctx context.Context, id int64, _ string) error {
			t.open(ctx, streamKey{id: id}, false)
			return nil
		},
		StreamClosedFunc: func(id int64, _ *corev3.Node) { t.close(streamKey{id: id}) },
		DeltaStreamOpenFunc: func(ctx context.Context, id int64, _ string) error {
			t.open(ctx, streamKey{delta: true, id: id}, true)
			return nil
		},
		DeltaStreamClosedFunc:  func(id int64, _ *corev3.Node) { t.close(streamKey{delta: true, id: id}) },
		StreamRequestFunc:      t.request,
		StreamResponseFunc:     t.response,
		StreamDeltaRequestFunc: t.deltaRequest,
		StreamDeltaResponseFunc: func(id int64, _ *discoverygrpc.DeltaDiscoveryRequest, resp *discoverygrpc.DeltaDiscoveryResponse) {
			t.sent(streamKey{delta: true, id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
		},
	}
}

func (t *tracker) open(ctx context.Context, id streamKey, delta bool) {
	st := &streamState{sent: map[string]sent{}}
	st.Stream, st.Delta, st.ConnectedAt = id.id, delta, t.now().UTC()
	st.Resources = map[string]*ResourceStatus{}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		st.Peer = p.Addr.String()
	}
	t.mu.Lock()
	t.streams[id] = st
	t.mu.Unlock()
}

func (t *tracker) close(id streamKey) {
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

// reply records what a request says of the latest response of its type on
// its stream: nothing (a subscription, without a nonce, or a request with
// an older nonce, which the server ignores too), an ACK, or a NACK:
// error_detail set, or (from old clients) a version_info other than the
// version sent with that nonce. For a NACK it returns the rejected version.
func (t *tracker) reply(id streamKey, node *corev3.Node, typeURL, nonce, version string, detail *rpcstatus.Status) (rejected string, nack bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[id]
	if st == nil {
		return "", false
	}
	st.identify(node)
	last, ok := st.sent[typeURL]
	if nonce == "" || !ok || nonce != last.nonce {
		return "", false
	}
	r := st.resource(typeURL)
	now := t.now().UTC()
	if detail == nil && version != last.version {
		detail = &rpcstatus.Status{Message: fmt.Sprintf("version %q was not accepted (the client still has %q)", last.version, version)}
	}
	m := t.metrics.Load()
	if detail != nil {
		if m != nil {
			m.nacks.WithLabelValues(typeName(typeURL)).Inc()
		}
		n := &NackStatus{TypeURL: typeURL, Version: last.version, Error: detail.GetMessage(), At: now}
		r.LastNack = n
		t.lastNack[st.node] = n
		return last.version, true
	}
	if m != nil {
		m.acks.WithLabelValues(typeName(typeURL)).Inc()
	}
	r.AckedVersion, r.AckedAt = last.version, &now
	return "", false
}

// request records a SotW request (see reply).
//
// After a NACK, version_info still names the last accepted version, so the
// snapshot cache would answer at once with the same rejected snapshot, and a
// client that rejects it again would loop. The request's version_info is
// therefore set to the rejected version: the cache then holds the watch
// until a new version exists. (The server hands this same request to the
// cache right after the callback.)
func (t *tracker) request(id int64, req *discoverygrpc.DiscoveryRequest) error {
	rejected, nack := t.reply(streamKey{id: id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetVersionInfo(), req.GetErrorDetail())
	if nack {
		req.VersionInfo = rejected
	}
	return nil
}

// deltaRequest records a delta request (see reply). Delta ACKs carry no
// version: the version is the one sent with the nonce. The delta cache does
// not resend rejected resources, so nothing is rewritten.
func (t *tracker) deltaRequest(id int64, req *discoverygrpc.DeltaDiscoveryRequest) error {
	key := streamKey{delta: true, id: id}
	version := ""
	t.mu.Lock()
	if st := t.streams[key]; st != nil {
		version = st.sent[req.GetTypeUrl()].version
	}
	t.mu.Unlock()
	t.reply(key, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), version, req.GetErrorDetail())
	return nil
}

func (t *tracker) response(_ context.Context, id int64, _ *discoverygrpc.DiscoveryRequest, resp *discoverygrpc.DiscoveryResponse) {
	t.sent(streamKey{id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
}

func (t *tracker) sent(id streamKey, typeURL, nonce, version string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[id]
	if st == nil {
		return
	}
	st.sent[typeURL] = sent{nonce: nonce, version: version}
	st.resource(typeURL).SentVersion = version
	if m := t.metrics.Load(); m != nil {
		m.pushes.WithLabelValues(typeName(typeURL)).Inc()
	}
}

// xdsMetrics are the xDS server's counters, by resource type.
type xdsMetrics struct {
	pushes, acks, nacks *prometheus.CounterVec
}

// typeName is a type URL's last element ("Cluster", …): the metrics'
// bounded label (unknown types are "other").
func typeName(typeURL string) string {
	name := typeURL[strings.LastIndexByte(typeURL, '.')+1:]
	switch name {
	case "Cluster", "ClusterLoadAssignment", "Listener", "RouteConfiguration", "ScopedRouteConfiguration", "VirtualHost",
		"Secret", "Runtime", "ExtensionConfig":
		return name
	}
	return "other"
}

// counts returns the open streams and the distinct nodes connected.
func (t *tracker) counts() (streams, nodes int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := map[string]bool{}
	for _, st := range t.streams {
		if st.node != "" {
			seen[st.node] = true
		}
	}
	return len(t.streams), len(seen)
}

// RegisterMetrics exports the xDS server's metrics to reg:
// gatehouse_xds_streams and gatehouse_xds_connected_nodes (gauges: open
// streams, and distinct node ids among them), and
// gatehouse_xds_pushes_total, gatehouse_xds_acks_total and
// gatehouse_xds_nacks_total by resource type (type: Cluster, Listener,
// RouteConfiguration, ClusterLoadAssignment, …, or other). Call it once,
// before Run.
func (s *Server) RegisterMetrics(reg prometheus.Registerer) error {
	m := &xdsMetrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_xds_pushes_total",
			Help: "xDS responses sent to gateways, by resource type."}, []string{"type"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_xds_acks_total",
			Help: "xDS responses gateways accepted, by resource type."}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_xds_nacks_total",
			Help: "xDS responses gateways rejected (NACK), by resource type; the gateway's status shows the last error."}, []string{"type"}),
	}
	streams := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gatehouse_xds_streams", Help: "Open xDS streams."},
		func() float64 { n, _ := s.tracker.counts(); return float64(n) })
	nodes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gatehouse_xds_connected_nodes",
		Help: "Distinct node ids (gateways) with an open xDS stream."},
		func() float64 { _, n := s.tracker.counts(); return float64(n) })
	for _, c := range []prometheus.Collector{m.pushes, m.acks, m.nacks, streams, nodes} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("envoy: register metrics: %w", err)
		}
	}
	s.tracker.metrics.Store(m)
	return nil
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
	sort.Slice(out, func(i, j int) bool {
		if out[i].Stream != out[j].Stream {
			return out[i].Stream < out[j].Stream
		}
		return !out[i].Delta && out[j].Delta
	})
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
