// Package scripttest runs the replication protocols' data-driven
// interaction scripts, in the style of etcd raft's, and holds what their
// environments share (Base, Args). A script is a file of blocks, each
// some command lines, a line "----", the output the commands are expected
// to print, and a blank line. Lines starting with # and blank lines between blocks are kept as
// they are. With rewrite, the expected output is replaced by what the
// commands printed (read the diff before committing it).
package scripttest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"ftvm/arbiter/view"
	"ftvm/replication/outbuf"
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

// Args are a command line's fields.
type Args struct {
	t    *testing.T
	line string
	F    []string
}

// Parse splits line into its fields (see Fields).
func Parse(t *testing.T, line string) Args { return Args{t, line, Fields(t, line)} }

// Get is field i, which must be there.
func (a Args) Get(i int) string {
	if i >= len(a.F) {
		a.t.Fatalf("%q: missing argument %d", a.line, i)
	}
	return a.F[i]
}

// Count is field i as a number, def if the line has no such field.
func (a Args) Count(i, def int) int {
	if i >= len(a.F) {
		return def
	}
	n, err := strconv.Atoi(a.F[i])
	if err != nil {
		a.t.Fatalf("%q: %v", a.line, err)
	}
	return n
}

// Base is what the environments of the replication protocols' scripts
// share: the trace of what happened, the arbiter (the view it stores,
// answered as etcd would), and the counting of the frequent actions
// (heartbeats, acknowledgements) while ticks are stepped.
type Base struct {
	T     *testing.T
	View  view.View // the arbiter's
	trace []string
	count map[string]int // while ticking: the quiet actions counted
	quiet []string
}

// Printf adds a line to the trace.
func (b *Base) Printf(format string, args ...any) {
	b.trace = append(b.trace, fmt.Sprintf(format, args...))
}

// Take returns the trace since the last Take.
func (b *Base) Take() []string {
	t := b.trace
	b.trace = nil
	return t
}

// Action prints who's action a ("who: a"); while Ticks runs, the actions
// of a quiet kind (the first word of a's text) are counted instead.
func (b *Base) Action(who string, a any) {
	s := fmt.Sprint(a)
	if b.count != nil {
		kind := strings.Fields(s)[0]
		if slices.Contains(b.quiet, kind) {
			b.count[who+": "+kind]++
			return
		}
	}
	b.Printf("%s: %s", who, s)
}

// Ticks runs tick n times for who, counting the actions of the quiet
// kinds, and prints their counts after.
func (b *Base) Ticks(who string, n int, tick func(), quiet ...string) {
	b.count, b.quiet = map[string]int{}, quiet
	for range n {
		tick()
	}
	counts := b.count
	b.count = nil
	for _, k := range quiet {
		if c := counts[who+": "+k]; c > 0 {
			b.Printf("%s: %s x%d", who, k, c)
		}
	}
}

// Swap answers who's question to the arbiter, swap old to new, as an etcd
// arbiter would (unreachable: who cannot reach it), with the fields of
// the core's arbiter answer.
func (b *Base) Swap(who string, unreachable bool, old, new view.View) (won bool, cur view.View, err error) {
	switch {
	case unreachable:
		b.Printf("arbiter: %s cannot reach it", who)
		return false, view.View{}, errors.New("arbiter unreachable")
	case b.View == old || b.View == new:
		b.View, won = new, true
	}
	b.Printf("arbiter: %s swaps to %v: won=%v", who, new, won)
	return won, b.View, nil
}

// SetView is the command arbiter-view G P [B]: someone else stores a
// view at the arbiter.
func (b *Base) SetView(a Args) {
	g, _ := strconv.ParseUint(a.Get(1), 10, 64)
	v := view.View{Generation: g, Primary: a.Get(2)}
	if len(a.F) > 3 {
		v.Backup = a.F[3]
	}
	b.View = v
	b.Printf("arbiter: view is %v", v)
}

// OutBuf returns an output buffer (Solo) whose outputs print as who's.
func (b *Base) OutBuf(who string) *outbuf.Buffer {
	return outbuf.New(outbuf.Solo, func(o outbuf.Output) {
		if o.Net {
			b.Printf("%s: emit frame %q @%d", who, o.Data, o.Instret)
		} else {
			b.Printf("%s: emit console %q @%d", who, o.Data, o.Instret)
		}
	})
}
