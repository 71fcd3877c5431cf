package testsupport

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

const freshEnv = "FTVM_TEST_FRESH_PROCESS"

// InFreshProcess runs the calling test again, alone, in a new process of
// the test binary, and reports whether the caller is that process: a test
// that measures the process (its resident memory, what the Go heap hands
// out) starts with
//
//	if !testsupport.InFreshProcess(t) {
//		return
//	}
//
// In the parent, the child's output is logged and its failure fails t.
// Check for missing tools and guests before calling it, so that a skip is
// the parent's.
func InFreshProcess(t *testing.T) bool {
	t.Helper()
	if os.Getenv(freshEnv) == t.Name() {
		return true
	}
	var pattern []string
	for _, part := range strings.Split(t.Name(), "/") {
		pattern = append(pattern, "^"+regexp.QuoteMeta(part)+"$")
	}
	cmd := exec.Command(os.Args[0], "-test.run="+strings.Join(pattern, "/"), "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), freshEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	t.Logf("in a process of its own:\n%s", out)
	switch {
	case err != nil:
		t.Errorf("%s failed in a process of its own: %v", t.Name(), err)
	case !strings.Contains(string(out), "--- PASS: "+t.Name()):
		t.Errorf("%s did not pass in a process of its own", t.Name())
	}
	return false
}
