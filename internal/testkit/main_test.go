package testkit_test

import (
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
