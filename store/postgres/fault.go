package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatehouse-dev/gatehouse/store"
)

// classify adds store.ErrUnavailable or store.ErrStorageFull to err's chain
// when err says the database cannot be reached, did not answer in time or
// is out of space. nil, errors already classified and a caller's own
// cancellation are returned as they are.
func classify(err error) error {
	if err == nil || errors.Is(err, context.Canceled) ||
		errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrStorageFull) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "53100": // disk_full
			return fmt.Errorf("%w: %w", store.ErrStorageFull, err)
		case strings.HasPrefix(pgErr.Code, "08"), // connection_exception
			pgErr.Code == "53300", // too_many_connections
			pgErr.Code == "53200", // out_of_memory
			pgErr.Code == "57014", // query_canceled: statement_timeout
			pgErr.Code == "55P03", // lock_not_available: lock_timeout
			pgErr.Code == "25P03", // idle_in_transaction_session_timeout
			pgErr.Code == "57P01", // admin_shutdown
			pgErr.Code == "57P02", // crash_shutdown
			pgErr.Code == "57P03": // cannot_connect_now
			return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
		return err
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connectErr), pgconn.Timeout(err), errors.As(err, &netErr),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, pgconn.ErrConnClosed),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}
