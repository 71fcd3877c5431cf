package migrate

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestKnowsNoMachine: the state transfer works on any vm.Migratable, so
// outside its tests it imports nothing of the RISC-V machine.
func TestKnowsNoMachine(t *testing.T) {
	forbidden := []string{"ftvm/riscv", "ftvm/machine", "ftvm/devices", "ftvm/virtio", "ftvm/fdt"}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			for _, bad := range forbidden {
				if p == bad || strings.HasPrefix(p, bad+"/") {
					t.Errorf("%s imports %s: package migrate must stay ISA-free", name, p)
				}
			}
		}
	}
}
