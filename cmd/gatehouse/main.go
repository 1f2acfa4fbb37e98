// Command gatehouse is the single Gatehouse binary: `serve` runs everything
// in one process; `migrate` and `version` are operator tools.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand(os.Stdout, os.Stderr).ExecuteContext(ctx); err != nil {
		// An error may carry its exit status (config diff: 2 for changes)
		// and have nothing more to say.
		code := 1
		var withCode interface{ ExitCode() int }
		if errors.As(err, &withCode) {
			code = withCode.ExitCode()
		}
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "gatehouse:", msg)
		}
		os.Exit(code)
	}
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "gatehouse",
		Short:         "Gatehouse: a policy-engine-centric authorization gateway",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newServeCommand(stdout, stderr), newControlPlaneCommand(stdout, stderr), newAuthorizerCommand(stdout, stderr), newMigrateCommand(stderr), newVersionCommand(stdout))
	root.AddCommand(newDevCertsCommand(stdout))
	root.AddCommand(newDevTokenCommand(stdout, stderr))
	root.AddCommand(newBundleCommand(stdout, stderr))
	root.AddCommand(newConfigCommand(stdout, stderr))
	root.AddCommand(newDecisionsCommand(stdout, stderr))
	root.AddCommand(newPolicyCommand(stdout, stderr))
	return root
}

func newVersionCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := version
			if info, ok := debug.ReadBuildInfo(); ok && v == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
				v = info.Main.Version
			}
			_, err := fmt.Fprintf(stdout, "gatehouse %s\n", v)
			return err
		},
	}
}

// envFlag binds a flag to an environment variable: the flag's default is
// documented, the variable overrides it, an explicit flag overrides both.
type envFlag struct{ flag, env string }

func bindEnv(fs *pflag.FlagSet, bindings []envFlag) error {
	for _, b := range bindings {
		f := fs.Lookup(b.flag)
		if f == nil {
			return fmt.Errorf("internal: no flag --%s", b.flag)
		}
		if f.Changed {
			continue
		}
		if v, ok := os.LookupEnv(b.env); ok && v != "" {
			if err := fs.Set(b.flag, v); err != nil {
				return fmt.Errorf("%s=%q: %w", b.env, v, err)
			}
		}
	}
	return nil
}

// annotateEnv adds the environment variable to each flag's help text.
func annotateEnv(fs *pflag.FlagSet, bindings []envFlag) {
	for _, b := range bindings {
		if f := fs.Lookup(b.flag); f != nil {
			f.Usage += " (env " + b.env + ")"
		}
	}
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, errors.New("--log-level must be debug, info, warn or error")
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}
