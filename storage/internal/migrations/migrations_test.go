package migrations_test

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/fedora-qa/execdb/storage/internal/migrations"
)

func TestLoadOrdersByVersion(t *testing.T) {
	fsys := fstest.MapFS{
		"m/0010_later.sql": {Data: []byte("B")},
		"m/0002_first.sql": {Data: []byte("A")},
		"m/README":         {Data: []byte("not a migration")},
	}
	ms, err := migrations.Load(fsys, "m")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Version != 2 || ms[0].SQL != "A" || ms[1].Name != "0010_later.sql" {
		t.Errorf("got %+v, want 0002 then 0010", ms)
	}
}

func TestLoadRejectsBadNames(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"no number":        {"m/init.sql": {}},
		"repeated version": {"m/0001_a.sql": {}, "m/1_b.sql": {}},
	} {
		if _, err := migrations.Load(fsys, "m"); err == nil || !strings.Contains(err.Error(), "migration") {
			t.Errorf("%s: got %v, want an error", name, err)
		}
	}
}
