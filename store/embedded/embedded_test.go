package embedded_test

import (
	"context"
	"testing"

	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
	"github.com/gatehouse-dev/gatehouse/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		dir := t.TempDir()
		return storetest.Harness{Open: func(t *testing.T) store.Store {
			s, err := embedded.Open(context.Background(), dir)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			return s
		}}
	})
}

func TestSecondProcessIsLockedOut(t *testing.T) {
	dir := t.TempDir()
	s, err := embedded.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := embedded.Open(context.Background(), dir); err == nil {
		t.Fatal("a second handle on an open data dir must fail")
	}
}
