package arbiter

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func TestCheckSwap(t *testing.T) {
	v1 := vw(1, "a", "b")
	for _, c := range []struct {
		old, new View
		want     string // "" = valid
	}{
		{View{}, v1, ""},
		{v1, v1.Next("b", ""), ""},
		{v1, v1.Next("a", "c"), ""},
		{v1, vw(3, "b", ""), "does not follow"},
		{v1, vw(1, "b", ""), "does not follow"},
		{View{}, vw(2, "a", ""), "does not follow"},
		{View{}, View{}, "generation 0"},
		{v1, vw(2, "", "b"), "primary id is empty"},
		{v1, vw(2, "a", "a"), "its own backup"},
		{v1, vw(2, "a\n", ""), "unprintable"},
		{v1, vw(2, strings.Repeat("x", 257), ""), "bytes long"},
		{vw(0, "a", ""), vw(1, "a", ""), "old view"},
		{vw(^uint64(0), "a", ""), vw(0, "b", ""), "generation 0"},
	} {
		err := checkSwap(c.old, c.new)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("Swap(%v, %v): %v", c.old, c.new, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("Swap(%v, %v): error %v, want one with %q", c.old, c.new, err, c.want)
		}
	}
}

func TestEncoding(t *testing.T) {
	for _, v := range []View{vw(1, "a", ""), vw(7, "primary-1", "backup.2"), vw(^uint64(0), "ü", "日本")} {
		got, err := decode(encode(v))
		if err != nil || got != v {
			t.Errorf("decode(encode(%v)) = %v, %v", v, got, err)
		}
	}
	if got := string(encode(vw(3, "a", "b"))); got != `{"format":1,"generation":3,"primary":"a","backup":"b"}` {
		t.Errorf("encoding changed: %s", got)
	}
	for _, bad := range []string{
		"", "garbage", "{", "null", "[]", `"view"`,
		`{"format":1,"generation":3,"primary":"a"} {}`,
		`{"format":2,"generation":3,"primary":"a"}`,
		`{"generation":3,"primary":"a"}`,
		`{"format":1,"generation":0,"primary":"a"}`,
		`{"format":1,"generation":3,"primary":""}`,
		`{"format":1,"generation":3,"primary":"a","backup":"a"}`,
		`{"format":1,"generation":-1,"primary":"a"}`,
		`{"format":1,"generation":3,"primary":"a","extra":1}`,
		`{"format":1,"generation":3,"primary":"` + strings.Repeat("x", 5000) + `"}`,
	} {
		v, err := decode([]byte(bad))
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("decode(%.60q) = %v, %v; want ErrCorrupt", bad, v, err)
		}
	}
}

func TestMemory(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	if _, ok, err := m.Current(ctx); ok || err != nil {
		t.Fatalf("empty Current: ok %v err %v", ok, err)
	}
	v1 := View{}.Next("a", "b")
	if won, cur, err := m.Swap(ctx, vw(1, "x", ""), vw(2, "y", "")); won || err != nil || !cur.IsZero() {
		t.Fatalf("swap from a view never stored: won %v cur %v err %v", won, cur, err)
	}
	if won, cur, err := m.Swap(ctx, View{}, v1); !won || err != nil || cur != v1 {
		t.Fatalf("first swap: won %v cur %v err %v", won, cur, err)
	}
	if won, cur, err := m.Swap(ctx, View{}, v1); !won || err != nil || cur != v1 {
		t.Fatalf("repeated swap is not idempotent: won %v cur %v err %v", won, cur, err)
	}
	if won, cur, err := m.Swap(ctx, View{}, View{}.Next("b", "")); won || err != nil || cur != v1 {
		t.Fatalf("losing swap: won %v cur %v err %v", won, cur, err)
	}
	m.SetUnreachable(true)
	v2 := v1.Next("b", "")
	if won, _, err := m.Swap(ctx, v1, v2); won || !errors.Is(err, ErrUnreachable) {
		t.Fatalf("unreachable: won %v err %v", won, err)
	}
	m.SetUnreachable(false)
	m.SetLoseAnswers(true)
	if won, _, err := m.Swap(ctx, v1, v2); won || err == nil {
		t.Fatalf("lost answer: won %v err %v", won, err)
	}
	m.SetLoseAnswers(false)
	if won, cur, err := m.Swap(ctx, v1, v2); !won || err != nil || cur != v2 {
		t.Fatalf("retry after a lost answer: won %v cur %v err %v", won, cur, err)
	}
}

func TestDialEtcdArguments(t *testing.T) {
	for _, c := range []struct {
		eps     []string
		cluster string
		want    string
	}{
		{nil, "c", "no etcd endpoints"},
		{[]string{"127.0.0.1"}, "c", "want host:port"},
		{[]string{"ftp://127.0.0.1:1"}, "c", "want host:port"},
		{[]string{"127.0.0.1:1/x"}, "c", "want host:port"},
		{[]string{"127.0.0.1:1"}, "", "cluster name"},
		{[]string{"127.0.0.1:1"}, "a/b", "cluster name"},
		{[]string{"127.0.0.1:1"}, ".hidden", "cluster name"},
	} {
		a, err := DialEtcd(c.eps, c.cluster)
		if err == nil {
			a.Close()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("DialEtcd(%q, %q): %v, want an error with %q", c.eps, c.cluster, err, c.want)
		}
	}
}

// The replicas link this package, and cmd/ftvm will: it must not drag in
// etcd's server (about 30 MB) or its storage, which live in
// cmd/ftvm-witness only. (The raft library alone is small; PLOVER mode's
// core in package replication/plover is built on it.)
func TestNoServerDependency(t *testing.T) {
	for _, pkg := range []string{"ftvm/arbiter", "ftvm/arbiter/witness", "ftvm/cmd/ftvm"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "go.etcd.io/etcd/server/") || strings.HasPrefix(dep, "go.etcd.io/bbolt") {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
}

// vw is a View literal.
func vw(g uint64, primary, backup string) View {
	return View{Generation: g, Primary: primary, Backup: backup}
}
