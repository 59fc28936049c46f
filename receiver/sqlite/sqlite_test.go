package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/outpost-iot/outpost/receiver/store"
	"github.com/outpost-iot/outpost/receiver/store/storetest"
)

func openSQLiteT(t *testing.T) store.Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestStoreSQLite(t *testing.T) {
	t.Parallel()
	storetest.Run(t, openSQLiteT)
}
