package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/internal/tlsfiles"
)

func newDevCertsCommand(stdout io.Writer) *cobra.Command {
	var (
		out       string
		dnsNames  []string
		ips       []net.IP
		clientURI string
		valid     time.Duration
		force     bool
	)
	cmd := &cobra.Command{
		Use:   "dev-certs",
		Short: "Write a throwaway CA, server and client certificate for development",
		Long: `Write a throwaway certificate authority and a server and a client
certificate signed by it (ECDSA P-256) into --out: ca.pem, ca-key.pem,
server.pem, server-key.pem, client.pem, client-key.pem (keys mode 0600).
The server certificate names --dns and --ip (default localhost, 127.0.0.1
and ::1); the client certificate carries --client-uri as its SAN URI.

For development only: the CA key lies next to the certificates and nothing
can revoke them. Do not use these certificates in production.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			if valid <= 0 {
				return fmt.Errorf("--valid %s: must be positive", valid)
			}
			if !force {
				for _, name := range tlsfiles.DevCertFiles() {
					path := filepath.Join(out, name)
					if _, err := os.Lstat(path); err == nil {
						return fmt.Errorf("%s exists (--force replaces it)", path)
					} else if !errors.Is(err, fs.ErrNotExist) {
						return err
					}
				}
			}
			if err := tlsfiles.DevCerts(tlsfiles.DevCertOptions{Dir: out, DNSNames: dnsNames, IPs: ips, ClientURI: clientURI, Valid: valid}); err != nil {
				return err
			}
			for _, name := range tlsfiles.DevCertFiles() {
				if _, err := fmt.Fprintln(stdout, "wrote", filepath.Join(out, name)); err != nil {
					return err
				}
			}
			_, err := fmt.Fprintf(stdout, "valid until %s\nfor development only: do not use these certificates in production\n", time.Now().Add(valid).UTC().Format(time.RFC3339))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "directory to write the certificates into (created if missing)")
	f.StringSliceVar(&dnsNames, "dns", nil, "DNS names of the server certificate, comma-separated (default localhost, with 127.0.0.1 and ::1, when neither --dns nor --ip is given)")
	f.IPSliceVar(&ips, "ip", nil, "IP addresses of the server certificate, comma-separated")
	f.StringVar(&clientURI, "client-uri", "", "SAN URI of the client certificate, e.g. spiffe://gatehouse/tenant/acme/gateway/edge")
	f.DurationVar(&valid, "valid", 720*time.Hour, "validity of the certificates")
	f.BoolVar(&force, "force", false, "replace existing files")
	return cmd
}
