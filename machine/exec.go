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

// attachEngine puts the configured engine on every hart (a translator
// each).
func (m *Machine) attachEngine() error {
	if m.cfg.Exec != ExecJIT {
		return nil
	}
	for _, h := range m.harts {
		j, err := jit.New(h)
		if err != nil {
			return err
		}
		m.jits = append(m.jits, j)
	}
	return nil
}

// Exec returns the name of the machine's execution engine.
func (m *Machine) Exec() string { return m.cfg.Exec }

// TranslatorStats returns what the translators did, all harts together
// (zero with the interpreter).
func (m *Machine) TranslatorStats() jit.Stats {
	var s jit.Stats
	for _, j := range m.jits {
		t := j.Stats
		s.Blocks += t.Blocks
		s.GuestInsns += t.GuestInsns
		s.CodeBytes += t.CodeBytes
		s.Flushes += t.Flushes
		s.Suspended += t.Suspended
		s.Verified += t.Verified
		s.Invalidated += t.Invalidated
		s.Entries += t.Entries
		s.Native += t.Native
		s.TranslateNanos += t.TranslateNanos
		s.CodePeak += t.CodePeak // the harts' buffers together
		s.Links += t.Links
		s.Fused += t.Fused
	}
	return s
}
