// Package embedded is the zero-setup storage backend: one bbolt file in the
// data directory. Every committed transaction is fsynced before Update
// returns, so an acknowledged write survives a crash. Watchers are woken
// in-process; bbolt's file lock keeps a second process out.
package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/gatehouse-dev/gatehouse/internal/broadcast"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Bucket names. Keys use NUL as a separator (store.ValidateObject rejects NUL
// in key fields).
var (
	bucketMeta    = []byte("meta")    // "revision" -> uint64
	bucketObjects = []byte("objects") // uid -> Object JSON
	bucketLive    = []byte("live")    // kind\0tenant\0id -> uid (live objects)
	bucketNames   = []byte("names")   // kind\0tenant\0name -> uid (live objects)
	bucketSorted  = []byte("sorted")  // tenant\0kind\0id\0uid -> nil (all objects, list order)
	// bucketChildren holds the live objects that have a parent, by it:
	// tenant\0kind\0parent\0id -> uid (store.Query.ParentID, list order).
	bucketChildren = []byte("children")
	bucketChanges  = []byte("changes")          // revision -> []Change JSON
	bucketEvents   = []byte("events")           // seq -> Event JSON
	bucketEvIdx    = []byte("events_by_tenant") // tenant\0seq -> nil
	keyRevision    = []byte("revision")
)

// FileName is the database file inside the data directory.
const FileName = "gatehouse.db"

// Store is the embedded backend.
type Store struct {
	db *bolt.DB
	// writer admits one write transaction at a time. Waiting for it
	// honours the caller's context, which waiting for bbolt's own writer
	// lock would not.
	writer chan struct{}
	// batch queues the runtime writes waiting for the writer slot
	// (groupcommit.go).
	batch batcher
	// writeFault, when set (tests), fails write transactions the way a
	// failed disk write fails them.
	writeFault atomic.Pointer[func() error]

	notify broadcast.Broadcaster // notified after every commit
}

// Open opens (creating if needed) the store in dataDir.
func Open(ctx context.Context, dataDir string) (*Store, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dataDir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open %s: the data directory is in use by another gatehouse process (file lock not obtained within 2s): %w",
				path, store.ErrUnavailable)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketObjects, bucketLive, bucketNames, bucketSorted, bucketChanges, bucketEvents, bucketEvIdx, bucketState, bucketStateExpiry, bucketLogs, bucketLogIx} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if tx.Bucket(bucketChildren) == nil {
			if _, err := tx.CreateBucket(bucketChildren); err != nil {
				return err
			}
			if err := indexChildren(tx); err != nil {
				return err
			}
		}
		if tx.Bucket(bucketBundleRevs) != nil {
			return nil
		}
		if _, err := tx.CreateBucket(bucketBundleRevs); err != nil {
			return err
		}
		return migrateBundleRevisions(tx)
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialise %s: %w", path, classify(err, nil))
	}
	return &Store{db: db, writer: make(chan struct{}, 1)}, nil
}

// Close closes the database file.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks the database is open.
func (s *Store) Ping(ctx context.Context) error {
	return s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			return errors.New("embedded store: meta bucket missing")
		}
		return nil
	})
}

func (s *Store) wake() {
	s.notify.Notify()
}

func (s *Store) waitCh() <-chan struct{} { return s.notify.Wait() }

// Update runs fn in one bbolt read-write transaction.
func (s *Store) Update(ctx context.Context, fn func(ctx context.Context, tx store.Tx) error) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var rev int64
	err := s.update(ctx, func(btx *bolt.Tx) error {
		tx := &txn{reader: reader{btx: btx}, now: now()}
		if err := fn(ctx, tx); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if tx.rev == 0 {
			return nil
		}
		body, err := json.Marshal(tx.changes)
		if err != nil {
			return err
		}
		if err := btx.Bucket(bucketChanges).Put(u64(tx.rev), body); err != nil {
			return err
		}
		rev = tx.rev
		return nil
	})
	if err != nil {
		return 0, err
	}
	if rev != 0 {
		s.wake()
	}
	return rev, nil
}

// update runs fn in a bbolt read-write transaction once it holds the
// writer slot, or fails when ctx ends first. A failure for want of disk
// space wraps store.ErrStorageFull.
func (s *Store) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case s.writer <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("embedded store: wait for the writer: %w", ctx.Err())
	}
	defer func() { <-s.writer }()
	return s.solo(fn)
}

// classify wraps store.ErrStorageFull around an error that says the disk
// (or the quota) is full. fnErr is the error of the transaction's own
// function: it is matched by errors.Is only, while bbolt's errors, some of
// which keep only the message of the errno (bbolt wraps a failed file
// resize with %s), are also matched by that message.
func classify(err, fnErr error) error {
	if err == nil || errors.Is(err, store.ErrStorageFull) {
		return err
	}
	full := errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, berrors.ErrMaxSizeReached)
	if !full && !sameError(err, fnErr) {
		msg := err.Error()
		full = strings.Contains(msg, syscall.ENOSPC.Error()) || strings.Contains(msg, syscall.EDQUOT.Error())
	}
	if full {
		return fmt.Errorf("%w: %w", store.ErrStorageFull, err)
	}
	return err
}

// sameError reports whether err is fnErr without comparing values whose
// dynamic type is not comparable (a slice-based error list would panic
// with ==).
func sameError(err, fnErr error) bool {
	if err == nil || fnErr == nil {
		return err == fnErr
	}
	t := reflect.TypeOf(err)
	if t != reflect.TypeOf(fnErr) {
		return false
	}
	if !t.Comparable() {
		return true // the transaction's own error, returned as it is by bbolt
	}
	return err == fnErr
}

// View runs fn in a read-only snapshot.
func (s *Store) View(ctx context.Context, fn func(ctx context.Context, r store.Reader) error) error {
	return s.db.View(func(btx *bolt.Tx) error { return fn(ctx, reader{btx: btx}) })
}

func (s *Store) view(fn func(r reader) error) error {
	return s.db.View(func(btx *bolt.Tx) error { return fn(reader{btx: btx}) })
}

// Get implements store.Reader.
func (s *Store) Get(ctx context.Context, kind, tenantID, id string) (o *store.Object, err error) {
	err = s.view(func(r reader) error { o, err = r.Get(ctx, kind, tenantID, id); return err })
	return o, err
}

// GetByName implements store.Reader.
func (s *Store) GetByName(ctx context.Context, kind, tenantID, name string) (o *store.Object, err error) {
	err = s.view(func(r reader) error { o, err = r.GetByName(ctx, kind, tenantID, name); return err })
	return o, err
}

// List implements store.Reader.
func (s *Store) List(ctx context.Context, q store.Query) (p *store.Page, err error) {
	err = s.view(func(r reader) error { p, err = r.List(ctx, q); return err })
	return p, err
}

// ListEvents implements store.Reader.
func (s *Store) ListEvents(ctx context.Context, q store.EventQuery) (p *store.EventPage, err error) {
	err = s.view(func(r reader) error { p, err = r.ListEvents(ctx, q); return err })
	return p, err
}

// Revision implements store.Reader.
func (s *Store) Revision(ctx context.Context) (rev int64, err error) {
	err = s.view(func(r reader) error { rev, err = r.Revision(ctx); return err })
	return rev, err
}

// Watch streams changes after fromRevision. It reads the change log, then
// sleeps until the next commit wakes it.
func (s *Store) Watch(ctx context.Context, fromRevision int64) (<-chan store.WatchEvent, error) {
	if fromRevision < 0 {
		return nil, fmt.Errorf("%w: negative revision", store.ErrInvalid)
	}
	out := make(chan store.WatchEvent, 16)
	go func() {
		defer close(out)
		next := fromRevision + 1
		for {
			wait := s.waitCh() // taken before reading, so no commit is missed
			var batch []store.WatchEvent
			err := s.db.View(func(btx *bolt.Tx) error {
				c := btx.Bucket(bucketChanges).Cursor()
				for k, v := c.Seek(u64(uint64(next))); k != nil && len(batch) < 256; k, v = c.Next() {
					var changes []store.Change
					if err := json.Unmarshal(v, &changes); err != nil {
						return fmt.Errorf("decode change log at %d: %w", binary.BigEndian.Uint64(k), err)
					}
					batch = append(batch, store.WatchEvent{Revision: int64(binary.BigEndian.Uint64(k)), Changes: changes})
				}
				return nil
			})
			if err != nil {
				select {
				case out <- store.WatchEvent{Err: err}:
				case <-ctx.Done():
				}
				return
			}
			for _, ev := range batch {
				select {
				case out <- ev:
					next = ev.Revision + 1
				case <-ctx.Done():
					return
				}
			}
			if len(batch) == 256 {
				continue
			}
			select {
			case <-wait:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func u64[T int64 | uint64](v T) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(v))
	return b
}

func key(parts ...string) []byte {
	var b bytes.Buffer
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(0)
		}
		b.WriteString(p)
	}
	return b.Bytes()
}

// reader implements store.Reader over a bbolt transaction.
type reader struct{ btx *bolt.Tx }

func (r reader) load(uid []byte) (*store.Object, error) {
	v := r.btx.Bucket(bucketObjects).Get(uid)
	if v == nil {
		return nil, fmt.Errorf("embedded store: index points at missing object %s", uid)
	}
	var o store.Object
	if err := json.Unmarshal(v, &o); err != nil {
		return nil, fmt.Errorf("decode object %s: %w", uid, err)
	}
	return &o, nil
}

func (r reader) Get(ctx context.Context, kind, tenantID, id string) (*store.Object, error) {
	uid := r.btx.Bucket(bucketLive).Get(key(kind, tenantID, id))
	if uid == nil {
		return nil, fmt.Errorf("%s %q: %w", kind, id, store.ErrNotFound)
	}
	return r.load(uid)
}

func (r reader) GetByName(ctx context.Context, kind, tenantID, name string) (*store.Object, error) {
	if name == "" {
		return nil, fmt.Errorf("%s named %q: %w", kind, name, store.ErrNotFound)
	}
	uid := r.btx.Bucket(bucketNames).Get(key(kind, tenantID, name))
	if uid == nil {
		return nil, fmt.Errorf("%s named %q: %w", kind, name, store.ErrNotFound)
	}
	return r.load(uid)
}

func (r reader) List(ctx context.Context, q store.Query) (*store.Page, error) {
	if q.Kind == "" {
		return nil, fmt.Errorf("%w: query kind is required", store.ErrInvalid)
	}
	cur, err := store.DecodeObjectCursor(q.After)
	if err != nil {
		return nil, err
	}
	if q.ParentID != "" && !q.IncludeDeleted {
		return r.listChildren(q, cur)
	}
	if !q.IncludeDeleted {
		return r.listLive(q, cur)
	}
	prefix := append(key(q.TenantID, q.Kind), 0)
	page := newPager(q, cur)
	c := r.btx.Bucket(bucketSorted).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		rest := k[len(prefix):]
		i := bytes.LastIndexByte(rest, 0)
		if i < 0 {
			continue
		}
		o, err := r.load(rest[i+1:])
		if err != nil {
			return nil, err
		}
		if (!q.IncludeDeleted && !o.Live()) || (q.ParentID != "" && o.ParentID != q.ParentID) {
			continue
		}
		page.add(o)
	}
	return page.page, nil
}

// pager builds a page of a listing from the matching objects, in list
// order: every one counts in the total, those the cursor passed are
// skipped, those beyond the limit only tell there is a next page.
type pager struct {
	page  *store.Page
	limit int
	cur   store.ObjectCursor
}

func newPager(q store.Query, cur store.ObjectCursor) *pager {
	return &pager{page: &store.Page{Items: []*store.Object{}}, limit: q.Limit, cur: cur}
}

func (p *pager) add(o *store.Object) {
	p.page.Total++
	switch {
	case p.cur.Passed(o):
	case p.limit > 0 && len(p.page.Items) == p.limit:
		if p.page.Next == "" {
			p.page.Next = store.EncodeObjectCursor(p.page.Items[len(p.page.Items)-1])
		}
	default:
		p.page.Items = append(p.page.Items, o)
	}
}

// listChildren is List of the live children of q.ParentID, read from
// bucketChildren (in id order, the list order of live objects: one per
// id).
func (r reader) listChildren(q store.Query, cur store.ObjectCursor) (*store.Page, error) {
	prefix := append(key(q.TenantID, q.Kind, q.ParentID), 0)
	page := newPager(q, cur)
	c := r.btx.Bucket(bucketChildren).Cursor()
	for k, uid := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, uid = c.Next() {
		o, err := r.load(uid)
		if err != nil {
			return nil, err
		}
		page.add(o)
	}
	return page.page, nil
}

// listLive is List of the live objects of a kind, read from bucketLive
// (in id order, the list order of live objects: one per id). Only the
// page's objects are decoded; the others are counted by their keys, so a
// page costs one pass over the kind's keys, not a decode of every object.
func (r reader) listLive(q store.Query, cur store.ObjectCursor) (*store.Page, error) {
	prefix := append(key(q.Kind, q.TenantID), 0)
	page := &store.Page{Items: []*store.Object{}}
	c := r.btx.Bucket(bucketLive).Cursor()
	for k, uid := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, uid = c.Next() {
		page.Total++
		id := k[len(prefix):]
		switch {
		// cur.Passed, without making an object per key.
		case cur.ID != "" && (string(id) < cur.ID || string(id) == cur.ID && string(uid) <= cur.UID):
		case q.Limit > 0 && len(page.Items) == q.Limit:
			if page.Next == "" {
				page.Next = store.EncodeObjectCursor(page.Items[len(page.Items)-1])
			}
		default:
			o, err := r.load(uid)
			if err != nil {
				return nil, err
			}
			page.Items = append(page.Items, o)
		}
	}
	return page, nil
}

// childKey is o's key in bucketChildren.
func childKey(o *store.Object) []byte { return key(o.TenantID, o.Kind, o.ParentID, o.ID) }

// putChild indexes a live object that has a parent.
func putChild(btx *bolt.Tx, o *store.Object) error {
	if o.ParentID == "" {
		return nil
	}
	return btx.Bucket(bucketChildren).Put(childKey(o), []byte(o.UID))
}

// deleteChild drops o from bucketChildren (nothing when it has no parent).
func deleteChild(btx *bolt.Tx, o *store.Object) error {
	if o.ParentID == "" {
		return nil
	}
	return btx.Bucket(bucketChildren).Delete(childKey(o))
}

// indexChildren fills a new bucketChildren from the live objects (a
// store made before the index existed).
func indexChildren(btx *bolt.Tx) error {
	objects := btx.Bucket(bucketObjects)
	return btx.Bucket(bucketLive).ForEach(func(_, uid []byte) error {
		body := objects.Get(uid)
		if body == nil {
			return nil
		}
		var o store.Object
		if err := json.Unmarshal(body, &o); err != nil {
			return fmt.Errorf("index children: object %s: %w", uid, err)
		}
		return putChild(btx, &o)
	})
}

func (r reader) ListEvents(ctx context.Context, q store.EventQuery) (*store.EventPage, error) {
	after, err := store.DecodeEventCursor(q.After)
	if err != nil {
		return nil, err
	}
	prefix := append([]byte(q.TenantID), 0)
	page := &store.EventPage{Items: []*store.Event{}}
	c := r.btx.Bucket(bucketEvIdx).Cursor()
	// Keys of the prefix are prefix+seq. Seek to the cursor (or past the
	// newest possible seq) and step back to the first event to return.
	bound := bytes.Repeat([]byte{0xff}, 8)
	if after > 0 {
		bound = u64(uint64(after))
	}
	k, _ := c.Seek(append(append([]byte{}, prefix...), bound...))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	events := r.btx.Bucket(bucketEvents)
	for ; k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, _ = c.Prev() {
		v := events.Get(k[len(prefix):])
		if v == nil {
			continue
		}
		var e store.Event
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("decode event: %w", err)
		}
		if !matchEvent(&e, q) {
			continue
		}
		if q.Limit > 0 && len(page.Items) == q.Limit {
			page.Next = store.EncodeEventCursor(page.Items[len(page.Items)-1])
			break
		}
		page.Items = append(page.Items, &e)
	}
	return page, nil
}

func matchEvent(e *store.Event, q store.EventQuery) bool {
	switch {
	case q.Kind != "" && e.Kind != q.Kind,
		q.Action != "" && e.Action != q.Action,
		q.Actor != "" && e.Actor != q.Actor,
		q.MinRevision > 0 && e.Revision < q.MinRevision,
		!q.From.IsZero() && e.Time.Before(q.From),
		!q.To.IsZero() && e.Time.After(q.To):
		return false
	}
	return true
}

func (r reader) Revision(ctx context.Context) (int64, error) {
	v := r.btx.Bucket(bucketMeta).Get(keyRevision)
	if v == nil {
		return 0, nil
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// txn implements store.Tx.
type txn struct {
	reader
	now     time.Time
	rev     int64
	changes []store.Change
}

func (t *txn) WriteRevision() int64 { return t.rev }

func (t *txn) revision() (int64, error) {
	if t.rev != 0 {
		return t.rev, nil
	}
	cur, err := t.Revision(context.Background())
	if err != nil {
		return 0, err
	}
	t.rev = cur + 1
	return t.rev, t.btx.Bucket(bucketMeta).Put(keyRevision, u64(t.rev))
}

func (t *txn) record(op store.Op, o *store.Object) {
	t.changes = append(t.changes, store.Change{
		Revision: t.rev, Op: op, Kind: o.Kind, TenantID: o.TenantID, ID: o.ID, UID: o.UID, ParentID: o.ParentID,
	})
}

func (t *txn) put(o *store.Object) error {
	body, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("encode %s %q: %w", o.Kind, o.ID, err)
	}
	return t.btx.Bucket(bucketObjects).Put([]byte(o.UID), body)
}

func (t *txn) Create(ctx context.Context, o *store.Object) error {
	if err := store.ValidateObject(o); err != nil {
		return err
	}
	live := t.btx.Bucket(bucketLive)
	names := t.btx.Bucket(bucketNames)
	if live.Get(key(o.Kind, o.TenantID, o.ID)) != nil {
		return store.AlreadyExists(o.Kind, "id", o.ID)
	}
	if o.Name != "" && names.Get(key(o.Kind, o.TenantID, o.Name)) != nil {
		return store.AlreadyExists(o.Kind, "name", o.Name)
	}
	rev, err := t.revision()
	if err != nil {
		return err
	}
	o.UID = uuid.NewString()
	o.Revision, o.CreateRevision = rev, rev
	o.CreatedAt, o.UpdatedAt = t.now, t.now
	if o.UpdatedBy == "" {
		o.UpdatedBy = o.CreatedBy
	}
	o.DeletedAt = nil
	if err := t.put(o); err != nil {
		return err
	}
	if err := live.Put(key(o.Kind, o.TenantID, o.ID), []byte(o.UID)); err != nil {
		return err
	}
	if o.Name != "" {
		if err := names.Put(key(o.Kind, o.TenantID, o.Name), []byte(o.UID)); err != nil {
			return err
		}
	}
	if err := t.btx.Bucket(bucketSorted).Put(key(o.TenantID, o.Kind, o.ID, o.UID), nil); err != nil {
		return err
	}
	if err := putChild(t.btx, o); err != nil {
		return err
	}
	t.record(store.OpCreate, o)
	return nil
}

func (t *txn) Update(ctx context.Context, o *store.Object, expectRevision int64) error {
	if err := store.ValidateObject(o); err != nil {
		return err
	}
	old, err := t.Get(ctx, o.Kind, o.TenantID, o.ID)
	if err != nil {
		return err
	}
	if expectRevision != 0 && old.Revision != expectRevision {
		return fmt.Errorf("%s %q is at revision %d, not %d: %w", o.Kind, o.ID, old.Revision, expectRevision, store.ErrConflict)
	}
	names := t.btx.Bucket(bucketNames)
	if o.Name != old.Name {
		if o.Name != "" && names.Get(key(o.Kind, o.TenantID, o.Name)) != nil {
			return store.AlreadyExists(o.Kind, "name", o.Name)
		}
		if old.Name != "" {
			if err := names.Delete(key(o.Kind, o.TenantID, old.Name)); err != nil {
				return err
			}
		}
		if o.Name != "" {
			if err := names.Put(key(o.Kind, o.TenantID, o.Name), []byte(old.UID)); err != nil {
				return err
			}
		}
	}
	rev, err := t.revision()
	if err != nil {
		return err
	}
	o.UID = old.UID
	o.CreateRevision, o.CreatedAt, o.CreatedBy = old.CreateRevision, old.CreatedAt, old.CreatedBy
	o.Revision, o.UpdatedAt = rev, t.now
	o.DeletedAt = nil
	if err := t.put(o); err != nil {
		return err
	}
	if o.ParentID != old.ParentID {
		if err := deleteChild(t.btx, old); err != nil {
			return err
		}
		if err := putChild(t.btx, o); err != nil {
			return err
		}
	}
	t.record(store.OpUpdate, o)
	return nil
}

func (t *txn) Delete(ctx context.Context, kind, tenantID, id string, expectRevision int64, soft bool) (*store.Object, error) {
	old, err := t.Get(ctx, kind, tenantID, id)
	if err != nil {
		return nil, err
	}
	if expectRevision != 0 && old.Revision != expectRevision {
		return nil, fmt.Errorf("%s %q is at revision %d, not %d: %w", kind, id, old.Revision, expectRevision, store.ErrConflict)
	}
	if err := t.remove(old, soft); err != nil {
		return nil, err
	}
	return old, nil
}

// remove deletes a live object's indexes and either its body (hard) or marks
// it deleted (soft).
func (t *txn) remove(o *store.Object, soft bool) error {
	rev, err := t.revision()
	if err != nil {
		return err
	}
	if err := t.btx.Bucket(bucketLive).Delete(key(o.Kind, o.TenantID, o.ID)); err != nil {
		return err
	}
	if o.Name != "" {
		if err := t.btx.Bucket(bucketNames).Delete(key(o.Kind, o.TenantID, o.Name)); err != nil {
			return err
		}
	}
	if err := deleteChild(t.btx, o); err != nil {
		return err
	}
	if soft {
		ts := t.now
		o.DeletedAt = &ts
		o.Revision, o.UpdatedAt = rev, t.now
		if err := t.put(o); err != nil {
			return err
		}
	} else {
		if err := t.btx.Bucket(bucketObjects).Delete([]byte(o.UID)); err != nil {
			return err
		}
		if err := t.btx.Bucket(bucketSorted).Delete(key(o.TenantID, o.Kind, o.ID, o.UID)); err != nil {
			return err
		}
	}
	t.record(store.OpDelete, o)
	return nil
}

func (t *txn) DeleteTenant(ctx context.Context, tenantID string) (int, error) {
	if tenantID == "" {
		return 0, fmt.Errorf("%w: tenant id is required", store.ErrInvalid)
	}
	prefix := append([]byte(tenantID), 0)
	var doomed []*store.Object
	c := t.btx.Bucket(bucketSorted).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		i := bytes.LastIndexByte(k, 0)
		o, err := t.load(k[i+1:])
		if err != nil {
			return 0, err
		}
		doomed = append(doomed, o)
	}
	for _, o := range doomed {
		if o.Live() {
			if err := t.remove(o, false); err != nil {
				return 0, err
			}
			continue
		}
		// Already soft-deleted: drop what is left of it, no change to report.
		if err := t.btx.Bucket(bucketObjects).Delete([]byte(o.UID)); err != nil {
			return 0, err
		}
		if err := t.btx.Bucket(bucketSorted).Delete(key(o.TenantID, o.Kind, o.ID, o.UID)); err != nil {
			return 0, err
		}
	}
	if err := deleteTenantRuntime(t.btx, tenantID); err != nil {
		return 0, err
	}
	return len(doomed), nil
}

func (t *txn) AppendEvent(ctx context.Context, e *store.Event) error {
	rev, err := t.revision()
	if err != nil {
		return err
	}
	events := t.btx.Bucket(bucketEvents)
	seq, err := events.NextSequence()
	if err != nil {
		return err
	}
	e.ID = strconv.FormatUint(seq, 10)
	e.Revision = rev
	if e.Time.IsZero() {
		e.Time = t.now
	}
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	if err := events.Put(u64(seq), body); err != nil {
		return err
	}
	return t.btx.Bucket(bucketEvIdx).Put(append(append([]byte(e.TenantID), 0), u64(seq)...), nil)
}

var _ store.Store = (*Store)(nil)
