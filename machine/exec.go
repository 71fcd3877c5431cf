package machine

import (
	"fmt"

	"ftvm/riscv/jit"
)

// Execution engines (Config.Exec). Both give the same instruction counts,
// the same state and the same outputs; the translator is faster.
const (
	ExecInterp = "interp" // the interpreter alone
	ExecJIT    = "jit"    // guest code translated to host code (linux/amd64), the interpreter for the rest
)

// DefaultExec is the engine used when Config.Exec is empty: the translator
// where the host supports it.
func DefaultExec() string {
	if jit.Available() {
		return ExecJIT
	}
	return ExecInterp
}

// checkExec validates an engine name (empty: the default).
func checkExec(name string) (string, error) {
	switch name {
	case "":
		return DefaultExec(), nil
	case ExecInterp:
		return name, nil
	case ExecJIT:
		if !jit.Available() {
			return "", fmt.Errorf("execution engine %q: not available on this host (it needs linux on amd64)", name)
		}
		return name, nil
	}
	return "", fmt.Errorf("execution engine %q: want %q or %q", name, ExecInterp, ExecJIT)
}

// attachEngine puts the configured engine on the hart.
func (m *Machine) attachEngine() error {
	if m.cfg.Exec != ExecJIT {
		return nil
	}
	j, err := jit.New(m.hart)
	if err != nil {
		return err
	}
	m.jit = j
	return nil
}

// Exec returns the name of the machine's execution engine.
func (m *Machine) Exec() string { return m.cfg.Exec }

// TranslatorStats returns what the translator did (zero with the
// interpreter).
func (m *Machine) TranslatorStats() jit.Stats {
	if m.jit == nil {
		return jit.Stats{}
	}
	return m.jit.Stats
}
