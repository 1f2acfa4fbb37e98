package main

import (
	"io"

	"github.com/spf13/cobra"
)

// policySubcommands are the subcommands of gatehouse policy, in the order
// help lists them: adding one is a line here.
func policySubcommands(stdout, stderr io.Writer) []*cobra.Command {
	return []*cobra.Command{
		newPolicyTestCommand(stdout, stderr),
		newPolicyEvalCommand(stdout, stderr),
		newPolicyReplayCommand(stdout),
	}
}

// newPolicyCommand is gatehouse policy: the tools of policy authors
// (docs/bundles.md, "Tests").
func newPolicyCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Author policies: run their tests offline",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(policySubcommands(stdout, stderr)...)
	return cmd
}
