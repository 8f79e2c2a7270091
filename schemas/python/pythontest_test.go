// Package pythontest runs the unit tests of the Python package execdb-messages (this directory)
// from go test, so that the README's test command covers them.
package pythontest

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

// python finds a python3 with jsonschema: Debian's first (what CI installs packages into),
// then the one on PATH.
func python(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		tried = append(tried, path)
		if exec.Command(path, "-c", "import jsonschema").Run() == nil {
			return path
		}
	}
	skip := t.Skipf
	if os.Getenv("CI") != "" {
		skip = t.Fatalf // .ci/run installs python3-jsonschema: in CI these tests must not skip
	}
	if len(tried) == 0 {
		skip("no python3: install python3 and python3-jsonschema (Debian) to run execdb-messages' tests")
	}
	skip("no jsonschema in %v: install python3-jsonschema (Debian) to run execdb-messages' tests", tried)
	return ""
}

var ran = regexp.MustCompile(`(?m)^Ran (\d+) tests? in`)

// TestPython runs python3 -m unittest over tests/ with this directory on the import path,
// without fedora-messaging unless it happens to be installed.
func TestPython(t *testing.T) {
	py := python(t)
	cmd := exec.Command(py, "-m", "unittest", "discover", "-v", "-s", "tests", "-t", ".")
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s -m unittest: %v\n%s", py, err, out)
	}
	m := ran.FindSubmatch(out)
	if m == nil {
		t.Fatalf("unittest printed no count of tests:\n%s", out)
	}
	if n, _ := strconv.Atoi(string(m[1])); n == 0 {
		t.Fatalf("unittest ran no test:\n%s", out)
	}
	if testing.Verbose() {
		t.Logf("%s", out)
	}
}
