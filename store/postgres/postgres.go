// Package postgres is the PostgreSQL storage backend, built on pgx (pgxpool)
// without an ORM. Several Gatehouse replicas may share one database: writers
// are serialised by the row lock on the single-row revision counter, every
// commit appends its changes to a change log and announces its revision with
// NOTIFY, and each Store keeps one dedicated LISTEN connection that wakes its
// watchers, which then read the change log.
package postgres

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	tern "github.com/jackc/tern/v2/migrate"

	"github.com/gatehouse-dev/gatehouse/internal/broadcast"
	"github.com/gatehouse-dev/gatehouse/store"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

const (
	// NotifyChannel is the LISTEN/NOTIFY channel on which every write
	// transaction announces its revision (the payload) when it commits.
	NotifyChannel = "gatehouse_changes"
	// VersionTable is the table in which tern records the schema version.
	VersionTable = "gh_schema_version"
	// ListenerApplicationName is the application_name of each Store's
	// dedicated LISTEN connection, to tell it apart in pg_stat_activity.
	ListenerApplicationName = "gatehouse-listener"

	// watchBatch caps how many revisions a watcher reads per query.
	watchBatch = 256
	// listenerCheckInterval is how long the listener waits for a
	// notification before it pings its connection, so that a connection
	// that died silently (no RST) is noticed and replaced. It only checks
	// the connection; watchers are never woken by it.
	listenerCheckInterval = 30 * time.Second
	// Reconnect backoff of the listener.
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
	// cleanupTimeout bounds statements that must run even when the caller's
	// context is gone (rollback, closing connections).
	cleanupTimeout = 5 * time.Second
)

var errClosed = errors.New("postgres store: closed")

// Store is the PostgreSQL backend. It is safe for concurrent use.
type Store struct {
	pool      *pgxpool.Pool
	rd        reader
	listenCfg *pgx.ConnConfig
	// timeout bounds each read of a watcher (Options.Timeout; 0: none).
	timeout time.Duration

	notify broadcast.Broadcaster // notified on every wake-up

	closeOnce    sync.Once
	closed       chan struct{}
	stopListener context.CancelFunc
	listenerDone chan struct{}
}

// Options tunes Open. The zero value keeps PostgreSQL's and pgx's
// defaults.
type Options struct {
	// Timeout is the server-side guard behind the caller's deadlines
	// (store.WithDeadline; gatehouse serve --store-timeout): the sessions'
	// statement_timeout, twice it as idle_in_transaction_session_timeout
	// (a replica that hangs mid-transaction cannot hold the revision lock
	// for long), the timeout of connecting (dial and startup) and of the
	// health ping of a pooled connection when it is acquired, and the bound
	// of each change log read of a watcher. Settings the database URL
	// makes itself (statement_timeout=…, connect_timeout=…,
	// pool_ping_timeout=…) win. Migrations run without it.
	Timeout time.Duration
}

// Open connects to databaseURL (a PostgreSQL URL or key/value connection
// string, as accepted by pgxpool), applies pending migrations, opens the
// connection pool and starts the change listener. Close releases them.
func Open(ctx context.Context, databaseURL string) (*Store, error) {
	return OpenWith(ctx, databaseURL, Options{})
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, databaseURL string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("postgres store: parse database URL: %w", err)
	}
	if err := migrate(ctx, cfg.ConnConfig.Copy()); err != nil {
		return nil, err
	}
	if opts.Timeout > 0 {
		params := cfg.ConnConfig.RuntimeParams
		if _, ok := params["statement_timeout"]; !ok {
			params["statement_timeout"] = strconv.FormatInt(opts.Timeout.Milliseconds(), 10)
		}
		if _, ok := params["idle_in_transaction_session_timeout"]; !ok {
			params["idle_in_transaction_session_timeout"] = strconv.FormatInt(2*opts.Timeout.Milliseconds(), 10)
		}
		if cfg.ConnConfig.ConnectTimeout == 0 {
			cfg.ConnConfig.ConnectTimeout = opts.Timeout
		}
		if cfg.PingTimeout == 0 {
			cfg.PingTimeout = opts.Timeout
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres store: open pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, classify(fmt.Errorf("postgres store: connect: %w", err))
	}
	listenCfg := cfg.ConnConfig.Copy()
	listenCfg.RuntimeParams["application_name"] = ListenerApplicationName
	s := &Store{
		pool:         pool,
		rd:           reader{q: pool},
		listenCfg:    listenCfg,
		timeout:      opts.Timeout,
		closed:       make(chan struct{}),
		listenerDone: make(chan struct{}),
	}
	// LISTEN is in place before Open returns, so a watcher started right
	// after cannot miss a commit.
	conn, err := s.connectListener(ctx)
	if err != nil {
		pool.Close()
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	s.stopListener = cancel
	go s.runListener(lctx, conn)
	return s, nil
}

// Migrate applies pending schema migrations to the database at databaseURL
// and returns; it is what Open runs first. It is safe to run from several
// processes at once: tern's migrator holds a PostgreSQL advisory lock
// (pg_advisory_lock) on its connection while it checks and upgrades the
// schema, so one process migrates and the others then find nothing to do.
func Migrate(ctx context.Context, databaseURL string) error {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("postgres store: parse database URL: %w", err)
	}
	return migrate(ctx, cfg)
}

func migrate(ctx context.Context, cfg *pgx.ConnConfig) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres store: migrate: connect: %w", err)
	}
	defer closeConn(conn)
	// NewMigrator creates the version table under tern's advisory lock, and
	// Migrate takes the same lock before reading the current version, so
	// concurrent migrators serialise.
	m, err := tern.NewMigrator(ctx, conn, VersionTable)
	if err != nil {
		return fmt.Errorf("postgres store: migrate: prepare %s: %w", VersionTable, err)
	}
	files, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		return fmt.Errorf("postgres store: migrate: %w", err)
	}
	if err := m.LoadMigrations(files); err != nil {
		return fmt.Errorf("postgres store: migrate: load migrations: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("postgres store: migrate: %w", err)
	}
	return nil
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	_ = conn.Close(ctx)
}

// Close stops the listener and closes the pool, waiting for connections in
// use to be released. Watchers receive an error event and end. Calling Close
// again does nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.stopListener()
		<-s.listenerDone
		s.pool.Close()
	})
	return nil
}

// Ping checks that the database is reachable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return classify(fmt.Errorf("postgres store: ping: %w", err))
	}
	return nil
}

// Get implements store.Reader outside any transaction.
func (s *Store) Get(ctx context.Context, kind, tenantID, id string) (*store.Object, error) {
	o, err := s.rd.Get(ctx, kind, tenantID, id)
	return o, classify(err)
}

// GetByName implements store.Reader outside any transaction.
func (s *Store) GetByName(ctx context.Context, kind, tenantID, name string) (*store.Object, error) {
	o, err := s.rd.GetByName(ctx, kind, tenantID, name)
	return o, classify(err)
}

// List implements store.Reader; the page and its Total come from one
// statement, hence one snapshot.
func (s *Store) List(ctx context.Context, q store.Query) (*store.Page, error) {
	p, err := s.rd.List(ctx, q)
	return p, classify(err)
}

// ListEvents implements store.Reader outside any transaction.
func (s *Store) ListEvents(ctx context.Context, q store.EventQuery) (*store.EventPage, error) {
	p, err := s.rd.ListEvents(ctx, q)
	return p, classify(err)
}

// Revision implements store.Reader: the latest committed revision.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	rev, err := s.rd.Revision(ctx)
	return rev, classify(err)
}

// Update runs fn in a READ COMMITTED transaction that first locks the
// revision row. Holding that lock for the whole transaction serialises
// writers, exactly like the embedded backend's single writer: every read in
// fn sees the latest committed state plus the transaction's own writes, so a
// read-check-write in fn cannot lose a concurrent update, and commit order is
// revision order. The revision itself is bumped at the first write only; at
// commit the change log row is inserted and the revision NOTIFYed in the same
// transaction.
func (s *Store) Update(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) (int64, error) {
	rev, err := s.update(ctx, fn)
	return rev, classify(err)
}

func (s *Store) update(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	ptx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return 0, fmt.Errorf("postgres store: begin: %w", err)
	}
	defer rollback(ptx)
	if _, err := ptx.Exec(ctx, `SELECT 1 FROM gh_revision FOR UPDATE`); err != nil {
		return 0, fmt.Errorf("postgres store: lock revision: %w", err)
	}
	tx := &txn{reader: reader{q: ptx}, tx: ptx, now: now()}
	if err := fn(ctx, tx); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if tx.rev != 0 {
		changes := tx.changes
		if changes == nil {
			changes = []store.Change{}
		}
		body, err := json.Marshal(changes)
		if err != nil {
			return 0, fmt.Errorf("postgres store: encode changes of revision %d: %w", tx.rev, err)
		}
		_, err = ptx.Exec(ctx, `WITH c AS (
				INSERT INTO gh_changes (revision, changes) VALUES ($1, $2) RETURNING revision)
			SELECT pg_notify('`+NotifyChannel+`', revision::text) FROM c`, tx.rev, body)
		if err != nil {
			return 0, fmt.Errorf("postgres store: append change log at revision %d: %w", tx.rev, err)
		}
	}
	if err := ptx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("postgres store: commit revision %d: %w", tx.rev, err)
	}
	if tx.rev != 0 {
		s.wake() // local watchers need not wait for the notification
	}
	return tx.rev, nil
}

// View runs fn in a REPEATABLE READ READ ONLY transaction: one consistent
// snapshot for all its reads.
func (s *Store) View(ctx context.Context, fn func(ctx context.Context, r store.Reader) error) error {
	return classify(s.view(ctx, fn))
}

func (s *Store) view(ctx context.Context, fn func(ctx context.Context, r store.Reader) error) error {
	ptx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("postgres store: begin read-only: %w", err)
	}
	defer rollback(ptx)
	if err := fn(ctx, reader{q: ptx}); err != nil {
		return err
	}
	if err := ptx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres store: end read-only transaction: %w", err)
	}
	return nil
}

// rollback ends a transaction that was not committed (a no-op after Commit),
// even when the caller's context is already cancelled.
func rollback(tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	_ = tx.Rollback(ctx)
}

// Watch streams committed changes with a revision greater than fromRevision.
// Every Store shares one LISTEN connection; each watcher reads the change log
// through the pool, sends one event per revision, then sleeps until the next
// notification (or a listener reconnect) wakes it. There is no polling.
func (s *Store) Watch(ctx context.Context, fromRevision int64) (<-chan store.WatchEvent, error) {
	if fromRevision < 0 {
		return nil, fmt.Errorf("%w: negative revision", store.ErrInvalid)
	}
	select {
	case <-s.closed:
		return nil, errClosed
	default:
	}
	out := make(chan store.WatchEvent, 16)
	go s.watch(ctx, fromRevision, out)
	return out, nil
}

func (s *Store) watch(ctx context.Context, last int64, out chan<- store.WatchEvent) {
	defer close(out)
	fail := func(err error) {
		select {
		case out <- store.WatchEvent{Err: err}:
		case <-ctx.Done():
		}
	}
	for {
		// Taken before reading, so a commit after the read wakes us.
		wait := s.waitCh()
		batch, err := s.changesAfter(ctx, last)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			select {
			case <-s.closed:
				err = errClosed
			default:
			}
			fail(classify(fmt.Errorf("postgres store: watch after revision %d: %w", last, err)))
			return
		}
		for _, ev := range batch {
			select {
			case out <- ev:
				last = ev.Revision
			case <-ctx.Done():
				return
			}
		}
		if len(batch) == watchBatch {
			continue
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return
		case <-s.closed:
			fail(errClosed)
			return
		}
	}
}

// changesAfter reads up to watchBatch change log entries after rev, within
// s.timeout when one is set (a hung database ends the watch with an error
// rather than holding it forever).
func (s *Store) changesAfter(ctx context.Context, rev int64) ([]store.WatchEvent, error) {
	if s.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	rows, err := s.pool.Query(ctx,
		`SELECT revision, changes FROM gh_changes WHERE revision > $1 ORDER BY revision LIMIT $2`, rev, watchBatch)
	if err != nil {
		return nil, fmt.Errorf("read change log: %w", err)
	}
	defer rows.Close()
	var batch []store.WatchEvent
	for rows.Next() {
		var ev store.WatchEvent
		var body []byte
		if err := rows.Scan(&ev.Revision, &body); err != nil {
			return nil, fmt.Errorf("read change log: %w", err)
		}
		if err := json.Unmarshal(body, &ev.Changes); err != nil {
			return nil, fmt.Errorf("decode change log at %d: %w", ev.Revision, err)
		}
		if len(ev.Changes) == 0 {
			ev.Changes = nil // as the embedded backend reports a transaction that only appended events
		}
		batch = append(batch, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read change log: %w", err)
	}
	return batch, nil
}

// wake wakes every watcher of this Store.
func (s *Store) wake() {
	s.notify.Notify()
}

func (s *Store) waitCh() <-chan struct{} { return s.notify.Wait() }

// connectListener opens the dedicated (unpooled) notification connection and
// subscribes it to NotifyChannel.
func (s *Store) connectListener(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, s.listenCfg)
	if err != nil {
		return nil, fmt.Errorf("postgres store: connect listener: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("postgres store: listen on %s: %w", NotifyChannel, err)
	}
	return conn, nil
}

// runListener fans notifications out to the watchers until ctx ends. When the
// connection fails it reconnects with backoff and then wakes every watcher,
// since notifications sent while it was down are lost.
func (s *Store) runListener(ctx context.Context, conn *pgx.Conn) {
	defer close(s.listenerDone)
	for {
		_ = s.listen(ctx, conn) // the error only says the connection is gone
		closeConn(conn)
		if ctx.Err() != nil {
			return
		}
		if conn = s.reconnectListener(ctx); conn == nil {
			return
		}
		s.wake()
	}
}

// listen waits for notifications on conn and wakes the watchers for each,
// until ctx ends or the connection fails.
func (s *Store) listen(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, listenerCheckInterval)
		_, err := conn.WaitForNotification(wctx)
		timedOut := wctx.Err() != nil
		cancel()
		switch {
		case err == nil:
			s.wake()
		case ctx.Err() != nil:
			return ctx.Err()
		case timedOut && !conn.IsClosed():
			// Quiet for a while: make sure the connection is still alive.
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("listener ping: %w", err)
			}
		default:
			return fmt.Errorf("listener: %w", err)
		}
	}
}

// reconnectListener retries connectListener with jittered exponential
// backoff until it succeeds or ctx ends (then it returns nil).
func (s *Store) reconnectListener(ctx context.Context) *pgx.Conn {
	backoff := minBackoff
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := s.connectListener(cctx)
		cancel()
		if err == nil {
			return conn
		}
		delay := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

var _ store.Store = (*Store)(nil)
