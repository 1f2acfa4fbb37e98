// Package resource is the kind registry of Gatehouse's configuration,
// modelled on Kubernetes apimachinery's runtime.Scheme: every kind of
// object is declared once (Scheme.Register) — its name, how the store
// keeps it, what it references and what happens to referrers when a
// referenced object is deleted, whether it goes into bundles and into the
// configuration document — and everything that enumerates kinds (admin
// routes, export/import, bundle inputs, delete guards, import order) reads
// the scheme instead of its own list.
//
// The scheme knows nothing of HTTP: the admin API attaches its wire type
// and rules to a kind through Kind.API and reads them back when it builds
// its routes.
package resource

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/gatehouse-dev/gatehouse/store"
)

// OnDelete says what deleting a referenced object does to the objects
// that reference it.
type OnDelete int

const (
	// Restrict refuses the delete (409 in_use) while referrers exist.
	Restrict OnDelete = iota
	// Cascade deletes the referrers with the object (in the same
	// transaction, each with its audit event).
	Cascade
	// Unlink leaves the referrers to the referenced kind's own delete,
	// which takes the object out of them through an index of its own (a
	// user leaves its groups): the scheme neither refuses nor cascades
	// the delete and does not look for referrers, and CheckReferences
	// leaves the reference to the referring kind's handlers. The
	// reference still orders the kinds (an import writes the referenced
	// kind first) and resolves the configuration document's references.
	Unlink
)

// Ref is a field of a kind that names objects of another kind of the same
// tenant.
type Ref struct {
	// Field is the wire field holding the id(s), e.g. "service_id"; for a
	// list (Many) errors name its element, "service_ids[2]".
	Field string
	// Kind is the referenced kind.
	Kind string
	Many bool
	// OnDelete applies when the referenced object is deleted.
	OnDelete OnDelete
	// IDs extracts the referenced ids from a stored object, in field
	// order; empty ids mean "none" and are dropped.
	IDs func(o *store.Object) ([]string, error)
}

// Target is one referenced object, with the wire field that names it.
type Target struct {
	Field, Kind, ID string
}

// Targets lists the objects o references through r.
func (r Ref) Targets(o *store.Object) ([]Target, error) {
	ids, err := r.IDs(o)
	if err != nil {
		return nil, fmt.Errorf("references %s of %s %q: %w", r.Field, o.Kind, o.ID, err)
	}
	out := make([]Target, 0, len(ids))
	for i, id := range ids {
		if id == "" {
			continue
		}
		f := r.Field
		if r.Many {
			f = fmt.Sprintf("%s[%d]", r.Field, i)
		}
		out = append(out, Target{Field: f, Kind: r.Kind, ID: id})
	}
	return out, nil
}

// Kind declares one kind of object.
type Kind struct {
	// Name is the store kind and the URL collection ("services").
	Name string
	// Singular names one object in messages ("service").
	Singular string
	// System kinds have no tenant (tenants themselves).
	System bool
	// Internal kinds have no routes of their own and are neither exported
	// nor imported (credentials, signing keys): they live and die with
	// their references.
	Internal bool
	// SoftDelete keeps a deleted object's row (and uid), freeing its id
	// and name.
	SoftDelete bool
	// Refs are the kind's references to other kinds.
	Refs []Ref
	// Bundled kinds are inputs of the tenant's bundles: a change to one
	// rebuilds them.
	Bundled bool
	// Exported kinds are lists of the configuration document (in the
	// scheme's dependency order).
	Exported bool
	// Canonical re-encodes a stored spec as the current code writes it
	// (so an import recognises unchanged objects whatever the backend's
	// JSON). Required for exported kinds; SpecCodec[S] makes one.
	Canonical func(json.RawMessage) ([]byte, error)
	// API is the admin API's definition of the kind (wire type, rules,
	// handlers); opaque to the scheme.
	API any
}

// SpecCodec is the Canonical function of a kind whose spec is S.
func SpecCodec[S any](raw json.RawMessage) ([]byte, error) {
	var spec S
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &spec); err != nil {
			return nil, err
		}
	}
	return json.Marshal(spec)
}

// Repo is the typed store repository of k with its store options.
func Repo[S any](k *Kind) store.Repo[S] {
	return store.Repo[S]{Kind: k.Name, SoftDelete: k.SoftDelete}
}

// Referrer is a reference of one kind to another.
type Referrer struct {
	Kind *Kind
	Ref  Ref
}

// Scheme is the set of registered kinds. Register all kinds, then call
// Complete; after that the scheme is read-only and safe for concurrent
// use.
type Scheme struct {
	kinds    []*Kind
	byName   map[string]*Kind
	ordered  []*Kind
	complete bool
}

// NewScheme is an empty scheme.
func NewScheme() *Scheme { return &Scheme{byName: map[string]*Kind{}} }

// Register adds a kind.
func (s *Scheme) Register(k *Kind) error {
	switch {
	case s.complete:
		return fmt.Errorf("register %q: the scheme is complete", k.Name)
	case k.Name == "":
		return fmt.Errorf("register: a kind needs a name")
	case s.byName[k.Name] != nil:
		return fmt.Errorf("register %q: already registered", k.Name)
	case k.Singular == "":
		return fmt.Errorf("register %q: a kind needs a singular name", k.Name)
	case k.Exported && k.Internal:
		return fmt.Errorf("register %q: internal kinds are not exported", k.Name)
	case k.Exported && k.Canonical == nil:
		return fmt.Errorf("register %q: exported kinds need Canonical", k.Name)
	}
	for _, r := range k.Refs {
		if r.Field == "" || r.Kind == "" || r.IDs == nil {
			return fmt.Errorf("register %q: reference %q needs a field, a kind and IDs", k.Name, r.Field)
		}
	}
	s.kinds = append(s.kinds, k)
	s.byName[k.Name] = k
	return nil
}

// MustRegister is Register for the registrations of a program's own
// kinds, where an error is a bug.
func (s *Scheme) MustRegister(k *Kind) {
	if err := s.Register(k); err != nil {
		panic(err)
	}
}

// Complete checks the references (every referenced kind registered, no
// cycles, exported kinds reference only exported or system kinds) and
// fixes the dependency order.
func (s *Scheme) Complete() error {
	if s.complete {
		return nil
	}
	for _, k := range s.kinds {
		for _, r := range k.Refs {
			to := s.byName[r.Kind]
			if to == nil {
				return fmt.Errorf("kind %q: reference %s names unregistered kind %q", k.Name, r.Field, r.Kind)
			}
			if k.Exported && !to.Exported && !to.System {
				return fmt.Errorf("kind %q is exported but references %q, which is not", k.Name, r.Kind)
			}
		}
	}
	// Depth-first topological order, stable in registration order.
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(k *Kind, path []string) error
	visit = func(k *Kind, path []string) error {
		switch state[k.Name] {
		case 1:
			return fmt.Errorf("reference cycle: %v", append(path, k.Name))
		case 2:
			return nil
		}
		state[k.Name] = 1
		for _, r := range k.Refs {
			if r.Kind == k.Name {
				continue // a kind may reference its own kind; order within it is the caller's
			}
			if err := visit(s.byName[r.Kind], append(path, k.Name)); err != nil {
				return err
			}
		}
		state[k.Name] = 2
		s.ordered = append(s.ordered, k)
		return nil
	}
	for _, k := range s.kinds {
		if err := visit(k, nil); err != nil {
			return err
		}
	}
	s.complete = true
	return nil
}

// Kinds is every kind, referenced kinds before their referrers (the order
// an import writes in; deletes run in reverse).
func (s *Scheme) Kinds() []*Kind { s.mustComplete(); return s.ordered }

// Kind looks a kind up by name.
func (s *Scheme) Kind(name string) (*Kind, bool) {
	k, ok := s.byName[name]
	return k, ok
}

// MustKind is Kind for names the program registered itself.
func (s *Scheme) MustKind(name string) *Kind {
	k, ok := s.byName[name]
	if !ok {
		panic(fmt.Sprintf("resource: kind %q is not registered", name))
	}
	return k
}

// Exported is the kinds of the configuration document, in dependency
// order.
func (s *Scheme) Exported() []*Kind {
	return slices.DeleteFunc(slices.Clone(s.Kinds()), func(k *Kind) bool { return !k.Exported })
}

// Bundled is the names of the kinds bundles are compiled from.
func (s *Scheme) Bundled() []string {
	var out []string
	for _, k := range s.Kinds() {
		if k.Bundled {
			out = append(out, k.Name)
		}
	}
	return out
}

// Referrers is every reference to kind, in dependency order of the
// referring kinds.
func (s *Scheme) Referrers(kind string) []Referrer {
	var out []Referrer
	for _, k := range s.Kinds() {
		for _, r := range k.Refs {
			if r.Kind == kind {
				out = append(out, Referrer{Kind: k, Ref: r})
			}
		}
	}
	return out
}

func (s *Scheme) mustComplete() {
	if !s.complete {
		if err := s.Complete(); err != nil {
			panic(err)
		}
	}
}
