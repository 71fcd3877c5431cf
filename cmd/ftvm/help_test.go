package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"ftvm/internal/testsupport"
)

// issueNumber is how a project issue would be named in text for users.
var issueNumber = regexp.MustCompile(`(?i)\bissues? #?[0-9]+`)

// TestHelpNamesFeatures: what users read (every command's help, the
// README and the documents beside it) names features, never the
// project's issue numbers.
func TestHelpNamesFeatures(t *testing.T) {
	ftvm := testsupport.Build(t, "ftvm/cmd/ftvm")
	witness := testsupport.Build(t, "ftvm/cmd/ftvm-witness")
	texts := map[string]string{}
	out, _ := exec.Command(ftvm).CombinedOutput()
	texts["ftvm"] = string(out)
	for name := range commands {
		out, _ := exec.Command(ftvm, name, "-h").CombinedOutput()
		texts["ftvm "+name+" -h"] = string(out)
	}
	out, _ = exec.Command(witness, "-h").CombinedOutput()
	texts["ftvm-witness -h"] = string(out)
	docs, _ := filepath.Glob("../../docs/*.md")
	for _, p := range append(docs, "../../README.md") {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		texts[p] = string(b)
	}
	for what, s := range texts {
		if len(s) < 20 {
			t.Errorf("%s: no help text (%q)", what, s)
		}
		for _, m := range issueNumber.FindAllString(s, -1) {
			t.Errorf("%s names %q", what, m)
		}
	}
}
