// Package migrations reads a backend's embedded, versioned schema migrations: files named
// <version>_<what>.sql. Each backend applies them its own way.
package migrations

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migration is one schema change.
type Migration struct {
	Version int
	Name    string // the file name
	SQL     string
}

// Load reads the .sql files of dir in fsys in version order. A file whose name does not start
// with a number and '_', or a version used twice, is an error.
func Load(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		prefix, _, ok := strings.Cut(e.Name(), "_")
		version, err := strconv.Atoi(prefix)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number and '_'", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: version, Name: e.Name(), SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", ms[i-1].Name, ms[i].Name, ms[i].Version)
		}
	}
	return ms, nil
}

// Latest is the highest version of ms (sorted, as Load returns them); 0 for none.
func Latest(ms []Migration) int {
	if len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].Version
}

// TooNewError is a database whose schema is newer than the binary knows: a newer execdb
// migrated it. Running an older one on it could write what the newer one does not expect, so
// serve and migrate refuse it.
type TooNewError struct {
	Database int // the database's highest applied version
	Binary   int // the highest version this binary knows
}

func (e *TooNewError) Error() string {
	return fmt.Sprintf("the database's schema is at version %d, newer than this execdb knows (version %d): "+
		"a newer execdb migrated it; run that one, or restore the database from its backup before the upgrade (docs/upgrading.md)",
		e.Database, e.Binary)
}

// CheckNotNewer returns a *TooNewError when the database's highest applied version is above
// the binary's.
func CheckNotNewer(applied int, ms []Migration) error {
	if latest := Latest(ms); applied > latest {
		return &TooNewError{Database: applied, Binary: latest}
	}
	return nil
}
