// Package xdscreds lets gRPC clients present a Gatehouse gateway credential
// to the xDS control plane, which refuses streams without one.
//
// Importing it (for its side effect) registers the xDS bootstrap channel
// credentials type "gatehouse" with grpc-go, as the grpc-xds-bootstrap.json
// of a gateway package uses it:
//
//	"channel_creds": [{"type": "gatehouse", "config": {"credential": "ghg_…"}}]
//
// or, to keep the secret out of the bootstrap, {"credential_file": "path"}
// (read at every new xDS stream, so the file can be replaced). The channel
// is plaintext HTTP/2, like "insecure", and every call carries the gRPC
// metadata "authorization: Bearer <credential>".
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
// exactly one of Credential and CredentialFile.
type Config struct {
	Credential     string `json:"credential,omitempty"`
	CredentialFile string `json:"credential_file,omitempty"`
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
	return bundle{rpc: rpc}, func() {}, nil
}

// bundle is plaintext transport plus the bearer credential.
type bundle struct{ rpc credentials.PerRPCCredentials }

func (b bundle) TransportCredentials() credentials.TransportCredentials {
	return insecure.NewCredentials()
}

func (b bundle) PerRPCCredentials() credentials.PerRPCCredentials { return b.rpc }

func (b bundle) NewWithMode(string) (credentials.Bundle, error) { return b, nil }

// Bearer returns per-RPC credentials sending token as
// "authorization: Bearer <token>", allowed on plaintext connections (the
// xDS port speaks plaintext HTTP/2 today).
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
