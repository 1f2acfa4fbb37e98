// Package store defines Gatehouse's storage model: one envelope for every
// configuration object, a global revision bumped once per write transaction,
// a change feed that can be watched from any revision, and an append-only
// audit log. Backends live in sub-packages (store/postgres, store/embedded)
// and must pass the conformance suite in store/storetest.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Errors every backend returns (wrapped) so callers can branch with errors.Is.
var (
	// ErrNotFound: no live object with that kind, tenant and id.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a live object of the same kind and tenant already has
	// that id or name.
	ErrAlreadyExists = errors.New("already exists")
	// ErrConflict: the object's revision is not the one the caller expected.
	ErrConflict = errors.New("revision conflict")
	// ErrCompacted: the change log no longer holds the requested revision.
	ErrCompacted = errors.New("revision compacted")
	// ErrInvalid: the object or query is malformed (a programming error, not
	// user input: the admin API validates before it writes).
	ErrInvalid = errors.New("invalid object")
	// ErrUnavailable: the backend did not answer in time or cannot be
	// reached (a hung or down database, a call past its deadline). The
	// outcome of a write that fails so is unknown: it may have committed.
	// Callers answer 503 and let the client retry.
	ErrUnavailable = errors.New("store unavailable")
	// ErrStorageFull: the backend is out of disk space (ENOSPC, a quota,
	// PostgreSQL's disk_full). Nothing of the failed write is kept.
	ErrStorageFull = errors.New("store storage full")
)

// AlreadyExistsError is the ErrAlreadyExists of a write that collided
// with a live object of the same kind and tenant: Field says on what,
// "id" or "name", and Value is the colliding value. errors.Is(err,
// ErrAlreadyExists) holds for it.
type AlreadyExistsError struct {
	Kind  string
	Field string
	Value string
}

// AlreadyExists is the error of a write whose field ("id" or "name") of
// value collides with a live object of kind.
func AlreadyExists(kind, field, value string) error {
	return &AlreadyExistsError{Kind: kind, Field: field, Value: value}
}

func (e *AlreadyExistsError) Error() string {
	return fmt.Sprintf("%s with %s %q: %s", e.Kind, e.Field, e.Value, ErrAlreadyExists)
}

// Is makes errors.Is(err, ErrAlreadyExists) hold.
func (e *AlreadyExistsError) Is(target error) bool { return target == ErrAlreadyExists }

// Object is the envelope every configuration object shares, whatever its kind.
// Spec holds the kind's own fields as JSON.
type Object struct {
	// UID identifies this incarnation of the object forever, even after a
	// soft delete frees its ID for reuse.
	UID string `json:"uid"`
	// Kind is the resource kind, e.g. "tenants", "services".
	Kind string `json:"kind"`
	// TenantID is empty for system-level kinds (tenants themselves).
	TenantID string `json:"tenant_id,omitempty"`
	ID       string `json:"id"`
	// Name is unique among live objects of the same kind and tenant, when set.
	Name string `json:"name,omitempty"`
	// ParentID links an object to its owner (an API to its service).
	ParentID    string            `json:"parent_id,omitempty"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	// Revision is the global revision of the transaction that last wrote it.
	Revision int64 `json:"revision"`
	// CreateRevision is the global revision of the transaction that created it.
	CreateRevision int64           `json:"create_revision"`
	CreatedAt      time.Time       `json:"created_at"`
	CreatedBy      string          `json:"created_by,omitempty"`
	UpdatedAt      time.Time       `json:"updated_at"`
	UpdatedBy      string          `json:"updated_by,omitempty"`
	DeletedAt      *time.Time      `json:"deleted_at,omitempty"`
	Spec           json.RawMessage `json:"spec,omitempty"`
}

// Live reports whether the object has not been soft-deleted.
func (o *Object) Live() bool { return o.DeletedAt == nil }

// Clone returns a deep copy, so callers can modify it without aliasing.
func (o *Object) Clone() *Object {
	if o == nil {
		return nil
	}
	c := *o
	if o.Labels != nil {
		c.Labels = make(map[string]string, len(o.Labels))
		for k, v := range o.Labels {
			c.Labels[k] = v
		}
	}
	if o.DeletedAt != nil {
		t := *o.DeletedAt
		c.DeletedAt = &t
	}
	if o.Spec != nil {
		c.Spec = append(json.RawMessage(nil), o.Spec...)
	}
	return &c
}

// Query selects objects for List. Kind is required; TenantID "" selects
// system-level objects only. Results are ordered by ID (then UID), which makes
// the After cursor stable under concurrent inserts.
type Query struct {
	Kind     string
	TenantID string
	// ParentID, when set, restricts the result to children of that object.
	ParentID string
	// IncludeDeleted also returns soft-deleted objects.
	IncludeDeleted bool
	// Limit caps the page size; 0 means no limit.
	Limit int
	// After is the opaque cursor returned as Page.Next by the previous page.
	After string
}

// Page is one page of a List result.
type Page struct {
	Items []*Object
	// Total is the number of objects matching the query, ignoring paging.
	Total int
	// Next is the cursor for the following page, empty on the last page.
	Next string
}

// Op says what a change did to an object.
type Op string

// Change operations.
const (
	OpCreate Op = "create"
	OpUpdate Op = "update"
	OpDelete Op = "delete"
)

// Change is one entry of the change log.
type Change struct {
	Revision int64  `json:"revision"`
	Op       Op     `json:"op"`
	Kind     string `json:"kind"`
	TenantID string `json:"tenant_id,omitempty"`
	ID       string `json:"id"`
	UID      string `json:"uid"`
	ParentID string `json:"parent_id,omitempty"`
}

// WatchEvent carries every change of one committed transaction, in order.
// A non-nil Err ends the stream (the channel is closed right after).
type WatchEvent struct {
	Revision int64
	Changes  []Change
	Err      error
}

// Event is an audit event: one successful admin write.
type Event struct {
	// ID is assigned by the store; it orders events (newer events have
	// greater IDs) and serves as the pagination cursor.
	ID        string    `json:"id"`
	TenantID  string    `json:"tenant_id,omitempty"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	Kind      string    `json:"kind"`
	ObjectID  string    `json:"object_id"`
	Revision  int64     `json:"revision"`
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id,omitempty"`
	// Changes summarises what the write changed (a JSON object written by
	// the caller, e.g. field → {"before","after"}, secrets masked); nil
	// when the caller recorded none. The store keeps it as it is.
	Changes json.RawMessage `json:"changes,omitempty"`
}

// EventQuery filters audit events. Results are newest first.
type EventQuery struct {
	// TenantID "" selects system-level events (those about tenants are
	// recorded under the tenant they concern).
	TenantID string
	Kind     string
	Action   string
	Actor    string
	// MinRevision hides events older than that revision (used to hide the
	// history of an earlier tenant that had the same id).
	MinRevision int64
	// From and To bound the event time (inclusive); zero means unbounded.
	From time.Time
	To   time.Time
	// Limit caps the page size; 0 means no limit.
	Limit int
	After string
}

// EventPage is one page of audit events.
type EventPage struct {
	Items []*Event
	Next  string
}

// Reader is the read side shared by the store and its transactions.
type Reader interface {
	// Get returns the live object, or ErrNotFound.
	Get(ctx context.Context, kind, tenantID, id string) (*Object, error)
	// GetByName returns the live object with that name, or ErrNotFound.
	GetByName(ctx context.Context, kind, tenantID, name string) (*Object, error)
	// List returns one page of objects matching q.
	List(ctx context.Context, q Query) (*Page, error)
	// ListEvents returns one page of audit events matching q, newest first.
	ListEvents(ctx context.Context, q EventQuery) (*EventPage, error)
	// Revision is the global revision of the latest committed write visible
	// to this reader.
	Revision(ctx context.Context) (int64, error)
}

// Tx is a read-write transaction. All writes in one transaction share one new
// global revision, assigned at the first write; nothing is visible to others
// until the transaction commits, and nothing is kept if it fails.
type Tx interface {
	Reader
	// Create inserts obj. UID, revisions and timestamps are set by the store
	// and written back into obj. ErrAlreadyExists when a live object of the
	// same kind and tenant has the same ID or Name.
	Create(ctx context.Context, obj *Object) error
	// Update replaces the live object with obj's ID. When expectRevision is
	// not 0 it must equal the stored revision (ErrConflict otherwise).
	// Creation fields are preserved; revision and UpdatedAt are set.
	Update(ctx context.Context, obj *Object, expectRevision int64) error
	// Delete removes the live object (hard delete), or marks it deleted when
	// soft is true, which frees its ID and name. When expectRevision is not 0
	// it must equal the stored revision. It returns the object as it was last.
	Delete(ctx context.Context, kind, tenantID, id string, expectRevision int64, soft bool) (*Object, error)
	// DeleteTenant hard-deletes every tenant-scoped object of tenantID (not
	// the tenant object itself, which is system-level) and returns how many.
	// The tenant's runtime state and logs go with them.
	DeleteTenant(ctx context.Context, tenantID string) (int, error)
	// AppendEvent records an audit event in this transaction. The store sets
	// its ID and Revision (the transaction's write revision, assigned now if
	// the transaction has not written yet).
	AppendEvent(ctx context.Context, e *Event) error
	// WriteRevision is the revision this transaction's writes get, or 0 when
	// it has not written yet.
	WriteRevision() int64
}

// StateEntry is one runtime state value.
type StateEntry struct {
	Kind      string          `json:"kind"`
	TenantID  string          `json:"tenant_id,omitempty"`
	ID        string          `json:"id"`
	Value     json.RawMessage `json:"value"`
	UpdatedAt time.Time       `json:"updated_at"`
	// ExpiresAt, when set, is when the value expires (PutStateTTL,
	// PutStateIfAbsent with a ttl): from then on no read sees it, and
	// SweepExpiredState deletes it. Nil: it never expires.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Expired reports whether the value has expired at the time at.
func (e *StateEntry) Expired(at time.Time) bool {
	return e.ExpiresAt != nil && !at.Before(*e.ExpiresAt)
}

// LogStream names one append-only log: a stream kind ("decisions"), the
// tenant, and a key inside it (a gateway id).
type LogStream struct {
	Name     string
	TenantID string
	Key      string
}

// LogEntry is one appended record. ID orders entries (newer is greater) and
// serves as the pagination cursor.
type LogEntry struct {
	ID   string          `json:"id"`
	Time time.Time       `json:"time"`
	Data json.RawMessage `json:"data"`
}

// LogQuery selects one page of a log stream, newest first: the entries
// matching Filter, older than After (a Next of an earlier page).
type LogQuery struct {
	Stream LogStream
	Limit  int
	After  string
	Filter LogFilter
	// WithTotal asks for LogPage.Total (a count of every entry matching
	// Filter, whatever After says; it costs a scan of those entries).
	WithTotal bool
}

// LogPage is one page of log entries.
type LogPage struct {
	Items []*LogEntry
	Next  string
	// Total is how many entries match the query's Filter, on every page
	// (only when the query asked WithTotal; else 0). It is counted in the
	// same snapshot as the page.
	Total int
}

// Runtime holds operational data that is not configuration: gateway status
// reports, decision logs, bundle bookkeeping, short-lived secrets such as
// authorization codes. Writes to it take no revision, enter no change log
// and are not audited; each call is its own durable transaction.
//
// A state value may expire (a ttl, rounded up to a microsecond; 0 means
// never). An expired value is gone for every read at once — GetState,
// ListState, TakeState and PutStateIfAbsent treat it as absent — and
// SweepExpiredState deletes it later (StateSweeper runs that). Expiry
// follows the backend's clock: PostgreSQL's server clock, so that every
// replica agrees; the process clock for the embedded store.
type Runtime interface {
	// PutState creates or replaces a state value; the value never expires
	// (an expiry the replaced value had is gone).
	PutState(ctx context.Context, kind, tenantID, id string, value json.RawMessage) error
	// PutStateTTL is PutState with an expiry: the value expires ttl from
	// now (ttl 0: never, as PutState; negative: ErrInvalid).
	PutStateTTL(ctx context.Context, kind, tenantID, id string, value json.RawMessage, ttl time.Duration) error
	// PutStateIfAbsent creates a state value, expiring after ttl (0:
	// never), only when no live value has that kind, tenant and id (an
	// expired one is replaced). It reports whether it created it: of
	// concurrent callers on one absent key exactly one gets true.
	PutStateIfAbsent(ctx context.Context, kind, tenantID, id string, value json.RawMessage, ttl time.Duration) (created bool, err error)
	// GetState returns a live state value, or ErrNotFound.
	GetState(ctx context.Context, kind, tenantID, id string) (*StateEntry, error)
	// TakeState reads and deletes a live state value atomically: it
	// returns the value and true once; every later (or concurrent) call
	// gets nil and false, as does a call for a missing or expired value.
	// It is how a single-use secret (an authorization code) is consumed.
	TakeState(ctx context.Context, kind, tenantID, id string) (*StateEntry, bool, error)
	// ListState returns every live state value of a kind and tenant, by id.
	ListState(ctx context.Context, kind, tenantID string) ([]*StateEntry, error)
	// DeleteState removes a state value (nothing happens when there is none).
	DeleteState(ctx context.Context, kind, tenantID, id string) error
	// SweepExpiredState deletes at most limit (> 0) expired state values,
	// of every kind and tenant, oldest expiry first, and returns how many
	// it deleted; fewer than limit means none was left at that moment.
	// Concurrent sweeps (replicas) do not block each other.
	SweepExpiredState(ctx context.Context, limit int) (int, error)
	// AppendLog appends entries (JSON values) to a stream, in order.
	AppendLog(ctx context.Context, stream LogStream, entries []json.RawMessage) error
	// ListLog returns one page of a stream, newest first. The entries of
	// a stream become visible in ID order: once a reader sees an entry,
	// it sees every older entry of that stream too, so a follower asking
	// for the entries newer than the newest it saw (LogFilter.Since)
	// misses none.
	ListLog(ctx context.Context, q LogQuery) (*LogPage, error)
	// CountLog counts the entries of a stream matching f by decision
	// policy (result.policy_id) and outcome (result.allowed), in policy
	// id order.
	CountLog(ctx context.Context, stream LogStream, f LogFilter) ([]LogPolicyCount, error)
	// TrimLog keeps the newest keep entries of a stream and returns how many
	// it removed.
	TrimLog(ctx context.Context, stream LogStream, keep int) (int, error)
	// ClaimBundleRevision gives a gateway's compiled content its revision,
	// atomically, so that every replica serves one content under one
	// revision. The store keeps, per gateway, the hash of its current
	// content and the revision it was recorded at. contentHash is the
	// hash of content compiled from a snapshot at candidateRevision (> 0):
	//   - the recorded content has this hash: its revision is returned,
	//     nothing changes (the first writer won);
	//   - nothing is recorded, or other content at a revision below
	//     candidateRevision: the new content is recorded at
	//     candidateRevision, which is returned;
	//   - other content is recorded at candidateRevision or above: the
	//     snapshot is older than content already recorded (by another
	//     replica), nothing changes, and the error wraps ErrConflict.
	// Content that comes back after other content gets a new revision, so
	// revisions only grow. Deleting the tenant forgets its records.
	ClaimBundleRevision(ctx context.Context, tenantID, gatewayID, contentHash string, candidateRevision int64) (int64, error)
}

// Store is a storage backend.
type Store interface {
	Reader
	Runtime
	// Update runs fn in a read-write transaction and commits when fn returns
	// nil. It returns the revision of the writes (0 when fn wrote nothing).
	// Once Update returns nil the writes are durable.
	Update(ctx context.Context, fn func(ctx context.Context, tx Tx) error) (int64, error)
	// View runs fn against a consistent read-only snapshot.
	View(ctx context.Context, fn func(ctx context.Context, r Reader) error) error
	// Watch streams committed changes with a revision greater than
	// fromRevision, in revision order, one WatchEvent per transaction. The
	// channel is closed when ctx ends or after an event carrying Err.
	Watch(ctx context.Context, fromRevision int64) (<-chan WatchEvent, error)
	// Ping checks that the backend is reachable.
	Ping(ctx context.Context) error
	// Close releases the backend's resources.
	Close() error
}
