// Package scripttest runs data-driven interaction scripts, in the style
// of etcd raft's: a file of blocks, each some command lines, a line
// "----", the output the commands are expected to print, and a blank
// line. Lines starting with # and blank lines between blocks are kept as
// they are. With rewrite, the expected output is replaced by what the
// commands printed (read the diff before committing it).
package scripttest

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Env runs one command line of a script and returns what it printed.
type Env interface {
	Run(t *testing.T, line string) []string
}

// RunDir runs every testdata/*.txt script as a subtest, each with a new
// Env.
func RunDir(t *testing.T, rewrite bool, newEnv func(t *testing.T) Env) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { Run(t, f, rewrite, newEnv(t)) })
	}
}

// Run runs the script at path in env.
func Run(t *testing.T, path string, rewrite bool, env Env) {
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	lines := strings.Split(string(src), "\n")
	for i := 0; i < len(lines); {
		l := lines[i]
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			out.WriteString(l + "\n")
			i++
			continue
		}
		start := i
		var cmds []string
		for i < len(lines) && lines[i] != "----" {
			cmds = append(cmds, lines[i])
			i++
		}
		if i == len(lines) {
			t.Fatalf("%s:%d: no ---- after the command", path, start+1)
		}
		i++
		var want []string
		for i < len(lines) && lines[i] != "" {
			want = append(want, lines[i])
			i++
		}
		var got []string
		for _, c := range cmds {
			got = append(got, env.Run(t, c)...)
		}
		if !rewrite && strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", path, start+1, strings.Join(cmds, "; "),
				strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		for _, c := range cmds {
			out.WriteString(c + "\n")
		}
		out.WriteString("----\n")
		for _, g := range got {
			out.WriteString(g + "\n")
		}
	}
	if rewrite {
		b := bytes.TrimRight(out.Bytes(), "\n")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Fields splits a command line at spaces; "quoted strings" (Go syntax)
// are one field.
func Fields(t *testing.T, line string) []string {
	var f []string
	for s := strings.TrimSpace(line); s != ""; s = strings.TrimSpace(s) {
		if s[0] == '"' {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			u, _ := strconv.Unquote(q)
			f = append(f, u)
			s = s[len(q):]
			continue
		}
		i := strings.IndexByte(s, ' ')
		if i < 0 {
			i = len(s)
		}
		f = append(f, s[:i])
		s = s[i:]
	}
	return f
}
