// Package layering holds the tests of the module's structure: its import
// layering, checked over every package of the module against the
// allowlist below, and the README's layout table, which must name every
// package.
package layering

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "ftvm"

// rule is what one package of the module may import. Tests are not
// checked: a test may use whatever it needs.
type rule struct {
	// imports lists what the package may import directly besides the
	// standard library: packages of this module by their path in the
	// module ("host/netdev"), other modules by a path prefix
	// ("go.etcd.io/etcd/client/v3" covers its subpackages).
	imports []string
	// pure marks the deterministic core: what it does is a function of
	// its inputs, so it imports from the standard library only what is
	// listed in pureStd (no clock, files, network, randomness, locks or
	// goroutines), links only other pure packages of the module and no
	// other module, starts no goroutine and prints nothing.
	pure bool
	// isaFree marks a package that must work for any engine behind the
	// vm seam: it links (transitively) none of isaPackages, the RISC-V
	// machine and its device models.
	isaFree bool
	// codeMemory, for a pure package only, lists what it may import to
	// map host memory for generated code (the translator's code buffer):
	// nothing else of the host. Whoever links it links these too.
	codeMemory []string
	// std, for a pure package only, lists standard packages beyond pureStd
	// that it may import for their types alone (the rule's comment says
	// why).
	std []string
	// threads, for a pure package only, names its one file that may run
	// its work on host threads: that file (and no other) may import
	// threadStd and start goroutines. It is the machine's parallel mode,
	// which is not deterministic and never runs in the default mode.
	threads string
}

// threadStd is what a pure package's threads file may import besides
// pureStd: locks, host atomics, unsafe to apply them to guest memory, and
// runtime to yield a host thread.
var threadStd = []string{"runtime", "sync", "sync/atomic", "unsafe"}

// rules is the allowlist: every package of the module has an entry. A new
// package gets one here, saying what it may import and which constraints
// it keeps.
var rules = map[string]rule{
	// The deterministic core.
	"vm":        {pure: true, isaFree: true},
	"riscv/fpu": {pure: true},
	"riscv":     {pure: true, imports: []string{"riscv/fpu"}},
	"devices":   {pure: true},
	"virtio":    {pure: true, imports: []string{"devices", "vm"}},
	"fdt":       {pure: true},
	"snapshot":  {pure: true, isaFree: true},
	"machine": {pure: true, imports: []string{"devices", "fdt", "riscv", "riscv/jit", "snapshot", "virtio", "vm"},
		threads: "parallel.go"},
	// The translator is deterministic like the interpreter; it maps host
	// memory for the code it generates, and nothing more of the host.
	"riscv/jit": {pure: true, imports: []string{"riscv", "golang.org/x/sys/unix"},
		codeMemory: []string{"golang.org/x/sys/unix", "runtime", "unsafe"}},

	// Record and replay: deterministic too, and engine-independent.
	"replay/eventlog": {pure: true, isaFree: true},
	"replay":          {pure: true, isaFree: true, imports: []string{"replay/eventlog", "vm"}},

	// Replication and state transfer know nothing of RISC-V or the
	// device models.
	"migrate":   {isaFree: true, imports: []string{"vm", "golang.org/x/sys"}},
	"statesync": {isaFree: true, imports: []string{"vm"}},
	"replication": {isaFree: true, imports: []string{"arbiter", "host", "host/netdev", "migrate", "replay", "replay/eventlog",
		"replication/core", "replication/outbuf", "replication/plover", "runloop", "statesync", "vm"}},
	// The pair's protocol without I/O, and the output rule's buffer: as
	// deterministic as the machine (time enters as ticks).
	// Its Log actions carry a slog.Level; the driver does the logging.
	"replication/core": {pure: true, isaFree: true, imports: []string{"arbiter/view", "replay/eventlog"},
		std: []string{"log/slog"}},
	"replication/outbuf": {isaFree: true},
	// PLOVER's protocol without I/O, built on etcd's raft (a pure state
	// machine too, but another module, whose election timeouts are
	// random): no clock, network or goroutine of its own.
	"replication/plover": {isaFree: true, imports: []string{"go.etcd.io/raft/v3", "google.golang.org/protobuf"}},
	"arbiter/view":       {pure: true, isaFree: true},
	"arbiter": {isaFree: true, imports: []string{"arbiter/view", "go.etcd.io/etcd/api/v3", "go.etcd.io/etcd/client/v3",
		"go.uber.org/zap", "google.golang.org/grpc"}},
	"arbiter/witness":  {isaFree: true},
	"cmd/ftvm-witness": {isaFree: true, imports: []string{"arbiter/witness", "go.etcd.io/etcd/client/pkg/v3", "go.etcd.io/etcd/server/v3", "go.uber.org/zap"}},
	"gdbstub":          {isaFree: true},

	// A fake engine for the tests of the layers above the seam.
	"internal/fakevm": {pure: true, isaFree: true, imports: []string{"vm"}},

	// The host side: backends of the machine's devices, which see them
	// only through the interfaces of package vm.
	"host":          {isaFree: true, imports: []string{"guest", "host/netdev", "vm", "golang.org/x/sys"}},
	"host/netdev":   {isaFree: true, imports: []string{"vm", "golang.org/x/sys"}},
	"host/netstack": {isaFree: true, imports: []string{"host/netdev", "gvisor.dev/gvisor"}},
	"host/vswitch":  {isaFree: true, imports: []string{"host/netdev", "host/netstack", "golang.org/x/sys"}},
	// The guests ftvm boots by name, and their files.
	"host/guests": {isaFree: true, imports: []string{"host"}},

	// The one host-driven run loop, for any engine.
	"runloop": {isaFree: true, imports: []string{"host", "vm"}},

	// The RISC-V machine on the host: its event logs and snapshot files.
	"machinelog": {imports: []string{"host", "machine", "replay", "replay/eventlog", "snapfile", "vm"}},
	"snapfile":   {imports: []string{"machine", "replay/eventlog"}},
	"gdbtarget":  {imports: []string{"gdbstub", "machine", "replay", "riscv", "vm"}},

	// Watching replicas and the switch over HTTP.
	"monitor": {isaFree: true, imports: []string{"host/vswitch", "replication", "github.com/prometheus/client_golang"}},

	// A witness, a switch and replica processes on one machine; the demo
	// and the benchmarks built on them.
	"cluster": {isaFree: true, imports: []string{"arbiter/witness", "guest/workload", "host/guests", "host/vswitch", "monitor", "replication"}},
	"demo":    {isaFree: true, imports: []string{"cluster", "guest/workload", "host/guests", "monitor", "replication"}},
	"bench": {imports: []string{"cluster", "guest/workload", "host", "host/guests", "host/netdev", "host/netstack", "machine", "machinelog",
		"monitor", "replay", "replay/eventlog", "replication", "riscv/jit", "runloop", "vm"}},

	// COLO's network comparison and rewriting: a state machine (time is
	// an argument, no goroutines or I/O) that knows frames, not engines.
	// Not pure only because it names time.Duration and netip addresses.
	"netcompare": {isaFree: true},

	// The command: flags and wiring.
	"cmd/ftvm": {imports: []string{"arbiter", "bench", "demo", "gdbtarget", "host", "host/guests", "host/netdev", "host/vswitch",
		"machine", "machinelog", "migrate", "monitor", "replay", "replay/eventlog", "replication", "runloop", "snapfile", "vm"}},

	// The guest's programs (and the host-side tools that build them) use
	// nothing of the monitor. Package guest says where the built guest is.
	"guest":                 {},
	"guest/cpio":            {},
	"guest/kv":              {},
	"guest/workload":        {imports: []string{"golang.org/x/sys"}},
	"guest/cmd/init":        {imports: []string{"guest/workload", "golang.org/x/sys"}},
	"guest/cmd/kvserver":    {imports: []string{"guest/kv"}},
	"guest/cmd/mkinitramfs": {imports: []string{"guest/cpio"}},
	"guest/cmd/workload":    {imports: []string{"guest/workload"}},

	// Shared test support: for tests only (no rule lets a package import
	// it), and engine-independent so any package's tests can use it.
	"internal/testsupport": {isaFree: true, imports: []string{"guest", "vm"}},
	"internal/layering":    {},
}

// isaPackages are the RISC-V machine and its device models.
var isaPackages = []string{"riscv", "riscv/fpu", "devices", "virtio", "fdt", "machine"}

// pureStd is what the deterministic core may import from the standard
// library: packages that touch nothing outside the process and start no
// goroutine. Add to it only such a package.
var pureStd = []string{
	"bufio", "bytes", "cmp", "crypto/sha256", "debug/elf", "encoding", "encoding/binary", "encoding/hex",
	"encoding/json", "errors", "fmt", "hash", "hash/crc32", "io", "maps", "math", "math/bits", "slices",
	"sort", "strconv", "strings", "unicode", "unicode/utf8",
}

// linkedOnlyBy names heavy dependencies and the only packages that may
// link them, transitively: the etcd server (about 30 MB) lives in the
// witness alone.
var linkedOnlyBy = map[string][]string{
	"go.etcd.io/etcd/server/v3": {"cmd/ftvm-witness"},
}

type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
}

func listModule(t *testing.T) map[string]*pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Dir,GoFiles,Imports,Deps,Error", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]*pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := new(pkg)
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Error != nil {
			t.Fatalf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs[p.ImportPath] = p
	}
	return pkgs
}

// rel is an import path relative to the module ("" when outside it).
func rel(path string) string {
	if r, ok := strings.CutPrefix(path, module+"/"); ok {
		return r
	}
	return ""
}

func isStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".") && first != module
}

func covers(prefix, path string) bool { return path == prefix || strings.HasPrefix(path, prefix+"/") }

// route returns a chain of imports from p to target, for the message.
func route(pkgs map[string]*pkg, from, target string) string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == target {
			var chain []string
			for c := cur; c != ""; c = prev[c] {
				chain = append(chain, c)
			}
			slices.Reverse(chain)
			return strings.Join(chain, " -> ")
		}
		if p, ok := pkgs[cur]; ok {
			for _, imp := range p.Imports {
				if _, seen := prev[imp]; !seen {
					prev[imp] = cur
					queue = append(queue, imp)
				}
			}
		}
	}
	return from + " -> ... -> " + target
}

const here = "internal/layering/layering_test.go"

func TestLayering(t *testing.T) {
	pkgs := listModule(t)
	if len(pkgs) < len(isaPackages) {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	for name := range rules {
		if _, ok := pkgs[module+"/"+name]; !ok {
			t.Errorf("%s names package %s, which does not exist: remove its entry from rules", here, name)
		}
	}
	paths := make([]string, 0, len(pkgs))
	for path := range pkgs {
		paths = append(paths, path)
	}
	slices.Sort(paths)
	for _, path := range paths {
		p := pkgs[path]
		name := rel(path)
		r, ok := rules[name]
		if !ok {
			t.Errorf("package %s is not in the layering allowlist: add an entry for %q to rules in %s, "+
				"listing what it may import (and pure or isaFree if it belongs to the deterministic core or must not link the RISC-V machine)",
				path, name, here)
			continue
		}
		checkImports(t, p, name, r)
		if r.pure {
			checkPure(t, pkgs, p, name)
		}
		if r.isaFree {
			for _, isa := range isaPackages {
				if slices.Contains(p.Deps, module+"/"+isa) {
					t.Errorf("%s links %s (%s): it must not link the RISC-V machine or a device model; name what it needs in package vm",
						name, isa, route(pkgs, path, module+"/"+isa))
				}
			}
		}
		for heavy, only := range linkedOnlyBy {
			for _, d := range p.Deps {
				if covers(heavy, d) && !slices.Contains(only, name) {
					t.Errorf("%s links %s (only %s may): %s", name, heavy, strings.Join(only, ", "), route(pkgs, path, d))
					break
				}
			}
		}
	}
}

func checkImports(t *testing.T, p *pkg, name string, r rule) {
	t.Helper()
	for _, imp := range p.Imports {
		if isStd(imp) {
			continue
		}
		allowed := false
		for _, a := range r.imports {
			if m := rel(imp); m != "" && m == a || m == "" && covers(a, imp) {
				allowed = true
				break
			}
		}
		if !allowed {
			t.Errorf("%s imports %s, which its rule does not allow: if that is right, add it to the imports of %q in %s",
				name, imp, name, here)
		}
	}
}

func checkPure(t *testing.T, pkgs map[string]*pkg, p *pkg, name string) {
	t.Helper()
	// What pure packages linked here (p included) may use for code memory.
	var codeMem []string
	for _, d := range append([]string{p.ImportPath}, p.Deps...) {
		if m := rel(d); m != "" {
			codeMem = append(codeMem, rules[m].codeMemory...)
		}
	}
	threads := rules[name].threads
	for _, imp := range p.Imports {
		if threads != "" && slices.Contains(threadStd, imp) {
			continue // checked file by file below
		}
		if isStd(imp) && !slices.Contains(pureStd, imp) && !slices.Contains(rules[name].codeMemory, imp) &&
			!slices.Contains(rules[name].std, imp) {
			t.Errorf("%s imports %s: the deterministic core must not touch the host (no clock, files, network, randomness, locks "+
				"or goroutines); if %s is none of these, add it to pureStd in %s", name, imp, imp, here)
		}
	}
	for _, d := range p.Deps {
		if isStd(d) || slices.ContainsFunc(codeMem, func(c string) bool { return covers(c, d) }) {
			continue
		}
		if m := rel(d); m == "" || !rules[m].pure {
			t.Errorf("%s links %s (%s), which is not part of the deterministic core", name, d, route(pkgs, p.ImportPath, d))
		}
	}
	fset := token.NewFileSet()
	for _, file := range p.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(p.Dir, file), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmtName := ""
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if threads != "" && file != threads && slices.Contains(threadStd, path) && !slices.Contains(rules[name].codeMemory, path) {
				t.Errorf("%s imports %s: in %s only %s may (host threads for the parallel mode)", filepath.Join(name, file), path, name, threads)
			}
			if path == "fmt" {
				fmtName = "fmt"
				if imp.Name != nil {
					fmtName = imp.Name.Name
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GoStmt:
				if file != threads {
					t.Errorf("%s: the deterministic core starts no goroutine", fset.Position(n.Pos()))
				}
			case *ast.CallExpr:
				if what := printer(n, fmtName); what != "" {
					t.Errorf("%s: %s writes to the host's standard output; the core's output goes through its callbacks",
						fset.Position(n.Pos()), what)
				}
			}
			return true
		})
	}
}

// printer names a call that writes to standard output or error: the
// print and println built-ins and fmt's Print functions.
func printer(call *ast.CallExpr, fmtName string) string {
	switch fn := call.Fun.(type) {
	case *ast.Ident:
		if fn.Name == "print" || fn.Name == "println" {
			return fn.Name
		}
	case *ast.SelectorExpr:
		if x, ok := fn.X.(*ast.Ident); ok && fmtName != "" && x.Name == fmtName {
			switch fn.Sel.Name {
			case "Print", "Printf", "Println":
				return fmt.Sprintf("%s.%s", x.Name, fn.Sel.Name)
			}
		}
	}
	return ""
}

// TestReadmeLayout: the README's layout table has one line for every
// package of the module, and none for a package that does not exist, so
// that a newcomer reading it finds every package.
func TestReadmeLayout(t *testing.T) {
	pkgs := listModule(t)
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "| package | job |\n|---|---|\n")
	if !ok {
		t.Fatal("README.md has no layout table (| package | job |)")
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "| `") {
			break
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(line, "| `"), "`")
		if listed[name] {
			t.Errorf("README.md lists %s twice", name)
		}
		listed[name] = true
	}
	for path := range pkgs {
		if name := rel(path); name != "" && !listed[name] {
			t.Errorf("README.md's layout table has no line for %s", name)
		}
	}
	for name := range listed {
		if pkgs[module+"/"+name] == nil {
			t.Errorf("README.md's layout table lists %s, which is not a package of the module", name)
		}
	}
}
