package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/store/postgres"
)

func newMigrateCommand(stderr io.Writer) *cobra.Command {
	var databaseURL string
	env := []envFlag{{"database-url", "GATEHOUSE_DATABASE_URL"}}
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the PostgreSQL schema migrations and exit",
		Long: `Apply the PostgreSQL schema migrations and exit. gatehouse serve also
applies them at start; run this to migrate ahead of a rolling deploy. The
embedded store needs no migrations.`,
		Args:    cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, args []string) error { return bindEnv(cmd.Flags(), env) },
		RunE: func(cmd *cobra.Command, args []string) error {
			if databaseURL == "" {
				return errors.New("--database-url (or GATEHOUSE_DATABASE_URL) is required")
			}
			if err := postgres.Migrate(cmd.Context(), databaseURL); err != nil {
				return err
			}
			_, err := fmt.Fprintln(stderr, "migrations applied")
			return err
		},
	}
	cmd.Flags().StringVar(&databaseURL, "database-url", "", "PostgreSQL URL (postgres://…)")
	annotateEnv(cmd.Flags(), env)
	return cmd
}
