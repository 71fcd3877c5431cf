package testsupport

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"
)

// builds holds the commands built by Build in this test binary.
var builds struct {
	sync.Mutex
	main bool              // Main is running the tests
	dir  string            // where they are, removed by Main
	done map[string]string // import path -> binary
}

// Main runs the tests of a package whose tests use Build, then removes
// what Build built. The package's TestMain calls it:
//
//	func TestMain(m *testing.M) { testsupport.Main(m) }
func Main(m *testing.M) {
	builds.Lock()
	builds.main = true
	builds.Unlock()
	code := m.Run()
	builds.Lock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	builds.Unlock()
	os.Exit(code)
}

// Build compiles the command pkg of this module (an import path such as
// "ftvm/cmd/ftvm-witness") once per test binary and returns the path of
// the binary. Every command goes in the same directory, under the last
// element of its import path, so that ftvm finds ftvm-witness next to
// itself as it does when installed.
func Build(tb testing.TB, pkg string) string {
	tb.Helper()
	builds.Lock()
	defer builds.Unlock()
	if !builds.main {
		tb.Fatal("testsupport.Build: the package's TestMain must call testsupport.Main (it removes the binaries)")
	}
	if p, ok := builds.done[pkg]; ok {
		return p
	}
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "ftvm-test-bin-")
		if err != nil {
			tb.Fatal(err)
		}
		builds.dir, builds.done = dir, map[string]string{}
	}
	out := filepath.Join(builds.dir, path.Base(pkg))
	if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
		tb.Fatal(fmt.Sprintf("go build %s: %v\n%s", pkg, err, b))
	}
	builds.done[pkg] = out
	return out
}

// Witness is the ftvm-witness command (an embedded etcd), built once.
func Witness(tb testing.TB) string {
	tb.Helper()
	return Build(tb, "ftvm/cmd/ftvm-witness")
}
