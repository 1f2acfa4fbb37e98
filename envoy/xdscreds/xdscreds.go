// Package xdscreds lets gRPC clients present a Gatehouse gateway credential
// to the xDS control plane, which refuses streams without one, over
// plaintext or TLS.
//
// Importing it (for its side effect) registers the xDS bootstrap channel
// credentials type "gatehouse" with grpc-go, as the grpc-xds-bootstrap.json
// of a gateway package uses it:
//
//	"channel_creds": [{"type": "gatehouse", "config": {"credential": "ghg_…"}}]
//
// or, to keep the secret out of the bootstrap, {"credential_file": "path"}
// (read at every new xDS stream, so the file can be replaced). Every call
// carries the gRPC metadata "authorization: Bearer <credential>".
//
// Without "tls" the channel is plaintext HTTP/2, like "insecure". With it,
//
//	"tls": {"ca_pem": "-----BEGIN CERTIFICATE-----…", "ca_file": "path",
//	        "server_name": "cp.example", "cert_file": "path", "key_file": "path"}
//
// (every field optional), the channel is TLS 1.2 or later (crypto/tls,
// certificates always verified): the control plane's certificate against
// ca_pem, else the PEM file ca_file (read once), else the system roots,
// and against server_name, by default the host of the xDS server_uri;
// cert_file and key_file (both or neither) are the client certificate,
// presented when the server asks for one and looked at again by
// handshakes (at most once a second), so the files can be replaced (a pair
// that does not load then keeps the previous one). The credential is then only sent over TLS.
// Unknown fields are refused, at every level.
//
// grpc-go's own "jwt_token_file" call credentials cannot carry it: they
// expect a JWT with an exp claim, refuse to send it without TLS, and are
// off unless GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS=true.
//
// Bearer gives the same metadata for a plain gRPC connection to the xDS
// port (grpc.WithPerRPCCredentials).
package xdscreds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/xds/bootstrap"
)

// Type is the bootstrap channel_creds type this package registers.
const Type = "gatehouse"

func init() { bootstrap.RegisterChannelCredentials(builder{}) }

// Config is the "config" object of a "gatehouse" channel_creds entry:
// exactly one of Credential and CredentialFile, and TLS for a TLS channel.
type Config struct {
	Credential     string     `json:"credential,omitempty"`
	CredentialFile string     `json:"credential_file,omitempty"`
	TLS            *TLSConfig `json:"tls,omitempty"`
}

// TLSConfig is the "tls" object of a Config: how the channel verifies the
// control plane and which client certificate it presents. The zero value
// verifies it against the system roots and the server_uri's host.
type TLSConfig struct {
	CAPEM      string `json:"ca_pem,omitempty"`      // CA bundle, inline PEM (wins over CAFile)
	CAFile     string `json:"ca_file,omitempty"`     // CA bundle file; both empty: the system roots
	ServerName string `json:"server_name,omitempty"` // name verified and sent as SNI; default the server_uri's host
	CertFile   string `json:"cert_file,omitempty"`   // client certificate chain (PEM), with KeyFile
	KeyFile    string `json:"key_file,omitempty"`
}

type builder struct{}

func (builder) Name() string { return Type }

func (builder) Build(raw json.RawMessage) (credentials.Bundle, func(), error) {
	var cfg Config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, nil, fmt.Errorf("xdscreds: %s channel_creds config: %w", Type, err)
	}
	var rpc credentials.PerRPCCredentials
	switch {
	case cfg.Credential != "" && cfg.CredentialFile != "":
		return nil, nil, fmt.Errorf("xdscreds: %s channel_creds config: credential and credential_file are exclusive", Type)
	case cfg.Credential != "":
		b, err := Bearer(cfg.Credential)
		if err != nil {
			return nil, nil, err
		}
		rpc = b
	case cfg.CredentialFile != "":
		if _, err := readCredential(cfg.CredentialFile); err != nil {
			return nil, nil, err
		}
		rpc = fileBearer(cfg.CredentialFile)
	default:
		return nil, nil, fmt.Errorf("xdscreds: %s channel_creds config needs credential or credential_file", Type)
	}
	if cfg.TLS == nil {
		return bundle{transport: insecure.NewCredentials(), rpc: rpc}, func() {}, nil
	}
	tc, err := cfg.TLS.transportCredentials()
	if err != nil {
		return nil, nil, fmt.Errorf("xdscreds: %s channel_creds config: %w", Type, err)
	}
	return bundle{transport: tc, rpc: overTLS{rpc}}, func() {}, nil
}

// bundle is the transport (plaintext or TLS) plus the bearer credential.
type bundle struct {
	transport credentials.TransportCredentials
	rpc       credentials.PerRPCCredentials
}

func (b bundle) TransportCredentials() credentials.TransportCredentials { return b.transport }

func (b bundle) PerRPCCredentials() credentials.PerRPCCredentials { return b.rpc }

func (b bundle) NewWithMode(string) (credentials.Bundle, error) { return b, nil }

// overTLS sends the credential over TLS only: grpc-go fails a call whose
// connection is not secure rather than send it.
type overTLS struct{ credentials.PerRPCCredentials }

func (overTLS) RequireTransportSecurity() bool { return true }

// Bearer returns per-RPC credentials sending token as
// "authorization: Bearer <token>", allowed on plaintext connections (the
// xDS port may speak plaintext HTTP/2).
func Bearer(token string) (credentials.PerRPCCredentials, error) {
	token = strings.TrimSpace(token)
	if token == "" || strings.ContainsAny(token, " \t\r\n") {
		return nil, errors.New("xdscreds: the credential must be one non-empty word")
	}
	return bearer(token), nil
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// fileBearer reads its credential from a file at every call.
type fileBearer string

func (f fileBearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	token, err := readCredential(string(f))
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + token}, nil
}

func (fileBearer) RequireTransportSecurity() bool { return false }

func readCredential(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("xdscreds: read credential_file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" || strings.ContainsAny(token, " \t\r\n") {
		return "", fmt.Errorf("xdscreds: credential_file %s must hold one non-empty word", path)
	}
	return token, nil
}
