package admin

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
)

// tenantGate lets each tenant run one policy evaluation job at a time (a
// policy test, a simulated request, a replay, a check or the checks of a
// save): the Tester's slots are shared by every tenant, and without it
// one tenant's stream of heavy jobs could hold them all and keep every
// other tenant's tests waiting.
type tenantGate struct {
	mu    sync.Mutex
	slots map[string]*tenantSlot
}

// tenantSlot is one tenant's turn and how many hold or wait for it.
type tenantSlot struct {
	turn  chan struct{}
	users int
}

// errTenantBusy: the tenant's previous job did not end within the wait.
var errTenantBusy = errors.New("another policy test, replay or check of this tenant is running")

// acquire waits at most wait for the tenant's turn; release ends it.
func (g *tenantGate) acquire(ctx context.Context, tid string, wait time.Duration) (release func(), err error) {
	g.mu.Lock()
	if g.slots == nil {
		g.slots = map[string]*tenantSlot{}
	}
	s := g.slots[tid]
	if s == nil {
		s = &tenantSlot{turn: make(chan struct{}, 1)}
		g.slots[tid] = s
	}
	s.users++
	g.mu.Unlock()
	done := func() {
		g.mu.Lock()
		if s.users--; s.users == 0 {
			delete(g.slots, tid)
		}
		g.mu.Unlock()
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case s.turn <- struct{}{}:
		return func() { <-s.turn; done() }, nil
	case <-timer.C:
		done()
		return nil, errTenantBusy
	case <-ctx.Done():
		done()
		return nil, context.Cause(ctx)
	}
}

// oneAtATime runs h in the tenant's turn (tenantGate), waiting at most the
// policy test deadline for it; a tenant whose turn stays taken gets 503
// with Retry-After.
func (s *Server) oneAtATime(h gin.HandlerFunc) gin.HandlerFunc {
	return func(c *gin.Context) {
		release, err := s.policyJobs.acquire(c.Request.Context(), tenantID(c), s.tester.Timeout())
		switch {
		case errors.Is(err, errTenantBusy):
			c.Header("Retry-After", "1")
			abort(c, newError(http.StatusServiceUnavailable, httpapi.CodeUnavailable, errTenantBusy.Error()+"; retry shortly", nil))
			return
		case err != nil:
			abort(c, newError(http.StatusServiceUnavailable, httpapi.CodeUnavailable, "the request ended while waiting for its turn", nil))
			return
		}
		defer release()
		h(c)
	}
}
