// Package pgtest gives tests a fresh, empty PostgreSQL database each.
//
// The server comes from GATEHOUSE_TEST_DATABASE_URL when it is set (a
// superuser URL: each database is created on that server and dropped when
// its test ends). Otherwise pgtest starts one throwaway server per test
// binary with the locally installed initdb and pg_ctl, and stops it when the
// binary ends; packages that use pgtest call pgtest.Main from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// When PostgreSQL is not installed the tests are skipped, unless
// GATEHOUSE_TEST_REQUIRE_POSTGRES=1, which makes that a failure.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Environment variables read by this package.
const (
	// EnvDatabaseURL names a PostgreSQL server to create test databases on,
	// as a URL to one of its databases, with a role that may CREATE DATABASE.
	EnvDatabaseURL = "GATEHOUSE_TEST_DATABASE_URL"
	// EnvRequire set to 1 turns "PostgreSQL not installed" from a skip into
	// a test failure (for CI).
	EnvRequire = "GATEHOUSE_TEST_REQUIRE_POSTGRES"
)

// errNotInstalled says no initdb/pg_ctl was found.
var errNotInstalled = errors.New("PostgreSQL not installed")

// The throwaway server of this test binary, started at most once.
var (
	serverOnce sync.Once
	serverMu   sync.Mutex
	server     *throwaway
	serverErr  error
)

// Main runs the tests and then stops the throwaway server, if one was
// started, before exiting with the tests' status. Call it from TestMain.
func Main(m *testing.M) {
	os.Exit(Run(m))
}

// Run is Main without the exit, for a TestMain with its own cleanup: it runs
// the tests, stops the throwaway server and returns the exit code.
func Run(m *testing.M) int {
	code := m.Run()
	stopServer()
	return code
}

// ServerURL returns a URL to the maintenance database of the test server:
// GATEHOUSE_TEST_DATABASE_URL, or the throwaway server (started on first
// use). It skips the test when PostgreSQL is not installed (fails it when
// GATEHOUSE_TEST_REQUIRE_POSTGRES=1).
func ServerURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvDatabaseURL); u != "" {
		return u
	}
	serverOnce.Do(func() {
		s, err := startServer()
		serverMu.Lock()
		server, serverErr = s, err
		serverMu.Unlock()
	})
	serverMu.Lock()
	s, err := server, serverErr
	serverMu.Unlock()
	switch {
	case errors.Is(err, errNotInstalled):
		msg := "PostgreSQL not installed: SKIPPING PostgreSQL tests. Install PostgreSQL (initdb, pg_ctl) or set " +
			EnvDatabaseURL + "; set " + EnvRequire + "=1 to make this a failure."
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("%s=1 but %v", EnvRequire, err)
		}
		t.Skip(msg)
	case err != nil:
		t.Fatalf("pgtest: start a throwaway PostgreSQL server: %v", err)
	}
	return s.url
}

// NewDatabase creates a fresh, empty database on the test server and returns
// a URL to it. The database is dropped when the test ends (after the test's
// own cleanups registered later, such as closing its pools).
func NewDatabase(t testing.TB) string {
	t.Helper()
	return newDatabaseOn(t, ServerURL(t))
}

func newDatabaseOn(t testing.TB, admin string) string {
	t.Helper()
	name := "gh_test_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("pgtest: connect to test server: %v", err)
	}
	defer conn.Close(context.Background())
	// CREATE DATABASE fails while someone else is connected to the template;
	// with several test binaries at work that can happen, briefly.
	for attempt := 0; ; attempt++ {
		_, err = conn.Exec(ctx, "CREATE DATABASE "+name)
		var pgErr *pgconn.PgError
		if err == nil || attempt >= 20 || !errors.As(err, &pgErr) || pgErr.Code != "55006" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() { dropDatabase(t, admin, name) })
	u, err := withDatabase(admin, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

func dropDatabase(t testing.TB, admin, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Errorf("pgtest: drop database %s: connect: %v", name, err)
		return
	}
	defer conn.Close(context.Background())
	// WITH (FORCE) (PostgreSQL 13+) also ends connections a test leaked.
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42601" { // older server: no FORCE
		_, _ = conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
		_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name)
	}
	if err != nil {
		t.Errorf("pgtest: drop database %s: %v", name, err)
	}
}

// withDatabase returns the connection string admin with its database
// replaced by name. admin is a URL or a key/value connection string.
func withDatabase(admin, name string) (string, error) {
	if strings.HasPrefix(admin, "postgres://") || strings.HasPrefix(admin, "postgresql://") {
		u, err := url.Parse(admin)
		if err != nil {
			return "", fmt.Errorf("parse %s: %w", EnvDatabaseURL, err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		q := u.Query()
		if q.Has("dbname") {
			q.Set("dbname", name)
			u.RawQuery = q.Encode()
		}
		return u.String(), nil
	}
	// Key/value form: a later key wins.
	return admin + " dbname=" + name, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Server is a PostgreSQL server of one test alone, which the test may
// pause and resume to see how its code copes with a hung database.
type Server struct {
	s      *throwaway
	killed atomic.Bool // Kill ran and Restart did not since
}

// ServerOption configures NewServer.
type ServerOption func(*throwaway)

// Durable makes the server keep every acknowledged commit through Kill:
// synchronous_commit is on (the throwaway default is off, which may lose
// the last commits when the server dies). fsync stays off: tests kill
// processes, not the machine, and the kernel keeps what was written.
func Durable() ServerOption {
	return func(s *throwaway) { s.durable = true }
}

// NewServer starts a throwaway PostgreSQL server for this test alone (even
// when GATEHOUSE_TEST_DATABASE_URL names a shared one: no test may hang or
// kill a server others use) and stops it when the test ends, resuming it
// first if it is paused. It skips the test when PostgreSQL is not
// installed (fails it when GATEHOUSE_TEST_REQUIRE_POSTGRES=1).
func NewServer(t testing.TB, opts ...ServerOption) *Server {
	t.Helper()
	s, err := startServer(opts...)
	switch {
	case errors.Is(err, errNotInstalled):
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("%s=1 but %v", EnvRequire, err)
		}
		t.Skip("PostgreSQL not installed: SKIPPING a test that needs a PostgreSQL server of its own. Install PostgreSQL (initdb, pg_ctl).")
	case err != nil:
		t.Fatalf("pgtest: start a PostgreSQL server: %v", err)
	}
	srv := &Server{s: s}
	t.Cleanup(func() {
		_ = srv.signal(syscall.SIGCONT)
		s.stop()
	})
	return srv
}

// URL is a URL to the server's maintenance database (a superuser).
func (s *Server) URL() string { return s.s.url }

// NewDatabase creates a fresh database on the server and returns a URL to
// it; it is dropped when the test ends.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	u := newDatabaseOn(t, s.s.url)
	// Runs before the drop (cleanups run last-registered first).
	t.Cleanup(func() {
		if s.killed.Load() {
			_ = s.Restart()
		}
		_ = s.Resume()
	})
	return u
}

// Pause stops (SIGSTOP) every process of the server, the postmaster and
// each of its children (backends, background workers): connections stay
// open but nothing answers, and new ones get no further than the TCP
// handshake, as with a hung database. Linux only (it reads /proc).
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume continues (SIGCONT) a paused server.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

// Kill sends SIGKILL to the server's postmaster alone, as when the
// database crashes, and waits until the server's other processes have
// noticed and exited (they do within moments; one that does not within
// 30 s is killed too), so that Restart can start it again. Clients see
// their connections end. Linux only (it reads /proc).
func (s *Server) Kill() error {
	pid, err := s.s.postmasterPID()
	if err != nil {
		return err
	}
	children, err := childProcesses(pid)
	if err != nil {
		return err
	}
	procs := map[int]string{pid: startTime(pid)}
	for _, c := range children {
		procs[c] = startTime(c)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("pgtest: kill postmaster %d: %w", pid, err)
	}
	s.killed.Store(true)
	deadline := time.Now().Add(30 * time.Second)
	for {
		alive := 0
		for p, started := range procs {
			if processAlive(p, started) {
				alive++
				if time.Now().After(deadline) {
					_ = syscall.Kill(p, syscall.SIGKILL)
				}
			}
		}
		if alive == 0 {
			break
		}
		if time.Now().After(deadline.Add(10 * time.Second)) {
			return fmt.Errorf("pgtest: %d processes of the killed server still running", alive)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The dead postmaster's lock files (the data directory's and the
	// socket's) stay; a postmaster left unreaped (a zombie) would still
	// look alive to the next one, so they go, with the socket.
	sock := filepath.Join(s.s.dir, "sock", ".s.PGSQL."+strconv.Itoa(s.s.port))
	for _, f := range []string{filepath.Join(s.s.dir, "data", "postmaster.pid"), sock + ".lock", sock} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("pgtest: remove the killed server's %s: %w", filepath.Base(f), err)
		}
	}
	return nil
}

// Restart starts a killed (Kill) server again, on the same data directory
// and port: PostgreSQL runs crash recovery, then accepts connections at the
// same URL. It returns once the server accepts connections.
func (s *Server) Restart() error {
	if err := s.s.startPostmaster(); err != nil {
		return fmt.Errorf("pgtest: restart: %w", err)
	}
	s.killed.Store(false)
	return nil
}

// startTime is the start time field of /proc/pid/stat ("" when the
// process is gone): with the pid it identifies one process.
func startTime(pid int) string {
	fields := procStat(pid)
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}

// processAlive reports whether the process pid, started at started, still
// runs (a zombie does not).
func processAlive(pid int, started string) bool {
	fields := procStat(pid)
	return len(fields) >= 20 && fields[19] == started && fields[0] != "Z"
}

// procStat returns the fields of /proc/pid/stat after the command name
// (state, ppid, …), or nil when the process is gone.
func procStat(pid int) []string {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(stat[i+1:]))
}

// signal sends sig to the postmaster, then to each of its children (every
// backend calls setsid, so they are not in its process group). Nothing
// else is signalled: only processes whose parent is this server's
// postmaster.
func (s *Server) signal(sig syscall.Signal) error {
	pid, err := s.s.postmasterPID()
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("pgtest: signal %v to postmaster %d: %w", sig, pid, err)
	}
	children, err := childProcesses(pid)
	if err != nil {
		return err
	}
	for _, c := range children {
		if err := syscall.Kill(c, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("pgtest: signal %v to server process %d: %w", sig, c, err)
		}
	}
	return nil
}

// childProcesses lists the processes whose parent is pid, from /proc.
func childProcesses(pid int) ([]int, error) {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("pgtest: list processes: %w", err)
	}
	var out []int
	for _, d := range dirs {
		child, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out, nil
}

// postmasterPID reads the server's postmaster.pid.
func (s *throwaway) postmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, "data", "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("pgtest: read postmaster.pid: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pgtest: postmaster.pid starts with %q, not a process id", line)
	}
	return pid, nil
}

// throwaway is a PostgreSQL server in a temporary directory.
type throwaway struct {
	url     string
	dir     string // temporary directory holding data/, sock/ and the log
	binDir  string
	port    int
	durable bool   // synchronous_commit on (Durable)
	runAs   string // system user running the server when we are root
	uid     int
	gid     int
	guard   *exec.Cmd // stops the server if this process dies first
	guardIn *os.File  // closing it (or dying) tells guard to act
}

func stopServer() {
	serverMu.Lock()
	s := server
	server, serverErr = nil, errors.New("pgtest: throwaway server already stopped")
	serverMu.Unlock()
	if s != nil {
		s.stop()
	}
}

// findBinDir returns the directory holding initdb and pg_ctl: from PATH, or
// the highest version under the usual install locations.
func findBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	type cand struct {
		dir string
		ver float64
	}
	var cands []cand
	for _, pattern := range []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/opt/postgresql*/bin"} {
		dirs, _ := filepath.Glob(pattern)
		for _, dir := range dirs {
			if _, err := os.Stat(filepath.Join(dir, "initdb")); err != nil {
				continue
			}
			if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err != nil {
				continue
			}
			ver := 0.0
			for _, part := range strings.Split(dir, string(filepath.Separator)) {
				part = strings.TrimPrefix(strings.TrimPrefix(part, "pgsql-"), "postgresql@")
				if v, err := strconv.ParseFloat(part, 64); err == nil {
					ver = v
				}
			}
			cands = append(cands, cand{dir, ver})
		}
	}
	if len(cands) == 0 {
		return "", fmt.Errorf("%w: no initdb and pg_ctl on PATH or under /usr/lib/postgresql/*/bin", errNotInstalled)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].ver > cands[j].ver })
	return cands[0].dir, nil
}

func startServer(opts ...ServerOption) (*throwaway, error) {
	binDir, err := findBinDir()
	if err != nil {
		return nil, err
	}
	base := os.TempDir()
	if len(base) > 40 { // keep the socket path under the 107-byte limit
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "gatehouse-pgtest-")
	if err != nil {
		return nil, err
	}
	s := &throwaway{dir: dir, binDir: binDir, uid: -1, gid: -1}
	for _, o := range opts {
		o(s)
	}
	if err := s.start(); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *throwaway) start() error {
	if os.Geteuid() == 0 {
		// initdb refuses to run as root: use an unprivileged system user.
		for _, name := range []string{"postgres", "nobody"} {
			u, err := user.Lookup(name)
			if err != nil {
				continue
			}
			uid, err1 := strconv.Atoi(u.Uid)
			gid, err2 := strconv.Atoi(u.Gid)
			if err1 != nil || err2 != nil {
				continue
			}
			s.runAs, s.uid, s.gid = name, uid, gid
			break
		}
		if s.runAs == "" {
			return errors.New("running as root and neither a postgres nor a nobody user exists to run the server")
		}
	}
	sock := filepath.Join(s.dir, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		return err
	}
	if s.runAs != "" {
		for _, p := range []string{s.dir, sock} {
			if err := os.Chown(p, s.uid, s.gid); err != nil {
				return fmt.Errorf("chown %s to %s: %w", p, s.runAs, err)
			}
		}
	}
	data := filepath.Join(s.dir, "data")
	if out, err := s.run(filepath.Join(s.binDir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
		"-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	s.startGuard(data)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		s.port = port
		if lastErr = s.startPostmaster(); lastErr == nil {
			s.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
			return nil
		}
	}
	return lastErr
}

// startPostmaster starts the server on its data directory and s.port and
// waits until it accepts connections.
func (s *throwaway) startPostmaster() error {
	data, sock := filepath.Join(s.dir, "data"), filepath.Join(s.dir, "sock")
	logFile := filepath.Join(s.dir, "server.log")
	syncCommit := "off"
	if s.durable {
		syncCommit = "on"
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=%s -c full_page_writes=off",
		s.port, sock, syncCommit)
	out, err := s.run(filepath.Join(s.binDir, "pg_ctl"), "start", "-w", "-t", "60", "-D", data, "-l", logFile, "-o", opts)
	if err != nil {
		log, _ := os.ReadFile(logFile)
		return fmt.Errorf("pg_ctl start: %w\n%s\nserver log:\n%s", err, out, tail(log, 2000))
	}
	return nil
}

// command builds the command line for name and args, run as s.runAs when we
// are root: runuser when available, su otherwise.
func (s *throwaway) command(name string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	switch {
	case s.runAs == "":
		cmd = exec.Command(name, args...)
	case haveRunuser():
		cmd = exec.Command("runuser", append([]string{"-u", s.runAs, "--", name}, args...)...)
	default:
		cmd = exec.Command("su", s.runAs, "-s", "/bin/sh", "-c", shellJoin(append([]string{name}, args...)))
	}
	cmd.Dir = s.dir // the server user may not be able to enter our working directory
	return cmd
}

func (s *throwaway) run(name string, args ...string) ([]byte, error) {
	return s.command(name, args...).CombinedOutput()
}

func haveRunuser() bool {
	_, err := exec.LookPath("runuser")
	return err == nil
}

// startGuard starts a small shell that waits for its standard input to
// close, which happens when this process exits however it exits (even when
// a test panics or times out, skipping Main), and then stops the server and
// removes its directory.
func (s *throwaway) startGuard(data string) {
	stop := s.command(filepath.Join(s.binDir, "pg_ctl"), "stop", "-D", data, "-m", "immediate", "-w")
	script := "read line; " + shellJoin(stop.Args) + " >/dev/null 2>&1; rm -rf " + shellQuote(s.dir)
	r, w, err := os.Pipe()
	if err != nil {
		return
	}
	guard := exec.Command("/bin/sh", "-c", script)
	guard.Stdin = r
	guard.Dir = "/"
	// Its own process group: a Ctrl-C aimed at the tests must not kill it
	// before it has cleaned up.
	guard.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := guard.Start(); err != nil {
		r.Close()
		w.Close()
		return
	}
	r.Close()
	s.guard, s.guardIn = guard, w
}

// stop stops the server and removes its directory.
func (s *throwaway) stop() {
	if _, err := os.Stat(filepath.Join(s.dir, "data", "postmaster.pid")); err == nil {
		_, _ = s.run(filepath.Join(s.binDir, "pg_ctl"), "stop", "-D", filepath.Join(s.dir, "data"), "-m", "immediate", "-w")
	}
	if s.guard != nil {
		_ = s.guard.Process.Kill()
		_ = s.guard.Wait()
		_ = s.guardIn.Close()
	}
	_ = os.RemoveAll(s.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
