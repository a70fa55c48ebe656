package memstore_test

import (
	"testing"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/memstore"
	"github.com/push2/push2/engine/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) engine.Store { return memstore.New() })
}
