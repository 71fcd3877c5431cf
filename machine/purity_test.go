package machine

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The deterministic core may not reach the host: no host clock, files,
// network, randomness or goroutines. This test enforces that on the source
// (test files excepted), so a stray time.Now() cannot slip in.
var corePackages = []string{"riscv", "riscv/fpu", "devices", "virtio", "fdt", "machine"}

// parallelFile is the one exception: the machine's parallel mode (one
// goroutine per hart, host atomics on guest RAM) lives there and may use
// sync, sync/atomic and unsafe and start goroutines. It never runs in the
// default, deterministic mode.
const parallelFile = "machine/parallel.go"

var parallelImports = map[string]bool{"sync": true, "unsafe": true}

var forbiddenImports = map[string]bool{
	"os": true, "os/exec": true, "net": true, "time": true, "math/rand": true,
	"math/rand/v2": true, "crypto/rand": true, "sync": true, "syscall": true,
	"unsafe": true, "golang.org/x/sys/unix": true, "ftvm/host": true,
}

func TestCoreIsPure(t *testing.T) {
	for _, pkg := range corePackages {
		dir := filepath.Join("..", pkg)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			name := e.Name()
			if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				continue
			}
			path := filepath.Join(dir, name)
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			exempt := filepath.ToSlash(filepath.Join(pkg, name)) == parallelFile
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if forbiddenImports[p] && !(exempt && parallelImports[p]) {
					t.Errorf("%s imports %q: the deterministic core must not touch the host", path, p)
				}
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if _, ok := n.(*ast.GoStmt); ok && !exempt {
					t.Errorf("%s starts a goroutine: the deterministic core is single-threaded", path)
				}
				return true
			})
		}
	}
}
