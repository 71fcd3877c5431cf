package arbiter_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"ftvm/arbiter"
	"ftvm/arbiter/witness"
	"ftvm/internal/testsupport"
)

// These tests run ftvm-witness as a real process (built once, here) and
// kill it as a crash would. Each witness start costs about a second.

func TestMain(m *testing.M) { testsupport.Main(m) }

func startWitness(tb testing.TB, cfg witness.Config) *witness.Process {
	tb.Helper()
	cfg.Binary = testsupport.Witness(tb)
	if cfg.Data == "" {
		cfg.Data = tb.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := witness.Start(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Kill() })
	return p
}

// restart starts a witness again on p's data directory and addresses.
func restart(tb testing.TB, p *witness.Process) *witness.Process {
	tb.Helper()
	return startWitness(tb, p.Config())
}

func dial(tb testing.TB, endpoints []string, opts ...arbiter.Option) arbiter.Arbiter {
	tb.Helper()
	a, err := arbiter.DialEtcd(endpoints, "pair", opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close() })
	return a
}

// raw is a plain etcd client, for what the arbiter does not offer: writing
// garbage, finding the leader.
func raw(tb testing.TB, endpoints ...string) *clientv3.Client {
	tb.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, Logger: zap.NewNop()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func within(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// slack is what a call may take beyond its deadline on a loaded machine
// before it counts as blocking.
const slack = 2 * time.Second

func mustSwap(t *testing.T, a arbiter.Arbiter, old, new arbiter.View) {
	t.Helper()
	ctx, cancel := within(10 * time.Second)
	defer cancel()
	won, cur, err := a.Swap(ctx, old, new)
	if err != nil || !won || cur != new {
		t.Fatalf("Swap(%v, %v) = won %v, cur %v, err %v; want a win", old, new, won, cur, err)
	}
}

func mustCurrent(t *testing.T, a arbiter.Arbiter, d time.Duration) arbiter.View {
	t.Helper()
	ctx, cancel := within(d)
	defer cancel()
	v, ok, err := a.Current(ctx)
	if err != nil || !ok {
		t.Fatalf("Current: %v, ok %v, err %v", v, ok, err)
	}
	return v
}

// expectFailure checks that a call on an arbiter that cannot answer
// returns an error, reports no win, and does not outlive its deadline.
func expectFailure(t *testing.T, what string, deadline time.Duration, call func(ctx context.Context) (won bool, err error)) {
	t.Helper()
	ctx, cancel := within(deadline)
	defer cancel()
	start := time.Now()
	won, err := call(ctx)
	took := time.Since(start)
	if err == nil || won {
		t.Errorf("%s: won %v, err %v; want an error and no win", what, won, err)
	}
	if took > deadline+slack {
		t.Errorf("%s took %v with a %v deadline", what, took, deadline)
	}
	t.Logf("%s: %v after %v", what, err, took.Round(time.Millisecond))
}

// Two replicas race to swap the same view, round after round: exactly one
// wins each round, and the loser is told the winner's view.
func TestRace(t *testing.T) {
	w := startWitness(t, witness.Config{})
	ids := [2]string{"a", "b"}
	clients := [2]arbiter.Arbiter{dial(t, []string{w.ClientURL}), dial(t, []string{w.ClientURL})}
	const rounds = 100
	var view arbiter.View // what both replicas know at the start of a round
	wins := [2]int{}
	for round := 0; round < rounds; round++ {
		type result struct {
			won      bool
			cur, new arbiter.View
			err      error
		}
		var res [2]result
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Each proposes itself as primary and the other as backup,
				// so the two proposals always differ.
				next := view.Next(ids[i], ids[1-i])
				ctx, cancel := within(10 * time.Second)
				defer cancel()
				<-gate
				won, cur, err := clients[i].Swap(ctx, view, next)
				res[i] = result{won, cur, next, err}
			}()
		}
		close(gate)
		wg.Wait()
		for i, r := range res {
			if r.err != nil {
				t.Fatalf("round %d: %s: %v", round, ids[i], r.err)
			}
		}
		if res[0].won == res[1].won {
			t.Fatalf("round %d: wins %v and %v; want exactly one", round, res[0].won, res[1].won)
		}
		winner := 0
		if res[1].won {
			winner = 1
		}
		if res[winner].cur != res[winner].new || res[1-winner].cur != res[winner].new {
			t.Fatalf("round %d: winner %s proposed %v; winner sees %v, loser sees %v", round, ids[winner], res[winner].new, res[winner].cur, res[1-winner].cur)
		}
		wins[winner]++
		view = res[winner].new
	}
	if got := mustCurrent(t, clients[0], 10*time.Second); got != view || got.Generation != rounds {
		t.Errorf("after %d rounds the stored view is %v, want %v", rounds, got, view)
	}
	t.Logf("wins: a %d, b %d", wins[0], wins[1])
}

// A killed witness makes calls fail within their deadline, with no win
// reported; restarted on its data directory, it still has the last view.
func TestWitnessKilled(t *testing.T) {
	w := startWitness(t, witness.Config{})
	a := dial(t, []string{w.ClientURL})
	short := dial(t, []string{w.ClientURL}, arbiter.WithCallTimeout(500*time.Millisecond))
	v1 := arbiter.View{}.Next("a", "b")
	v2 := v1.Next("b", "")
	mustSwap(t, a, arbiter.View{}, v1)

	if err := w.Kill(); err != nil {
		t.Fatal(err)
	}
	expectFailure(t, "Swap on a dead witness", time.Second, func(ctx context.Context) (bool, error) {
		won, _, err := a.Swap(ctx, v1, v2)
		return won, err
	})
	expectFailure(t, "Current on a dead witness", time.Second, func(ctx context.Context) (bool, error) {
		_, _, err := a.Current(ctx)
		return false, err
	})
	// Without a deadline in the context the call timeout bounds the call.
	expectFailure(t, "Swap on a dead witness, no deadline", 500*time.Millisecond, func(context.Context) (bool, error) {
		won, _, err := short.Swap(context.Background(), v1, v2)
		return won, err
	})

	w = restart(t, w)
	// The same client reconnects by itself.
	if got := mustCurrent(t, a, 15*time.Second); got != v1 {
		t.Fatalf("after the restart the view is %v, want %v", got, v1)
	}
	mustSwap(t, a, v1, v2)
	if got := mustCurrent(t, dial(t, []string{w.ClientURL}), 10*time.Second); got != v2 {
		t.Fatalf("a new client sees %v, want %v", got, v2)
	}
}

// A witness that was never there: dialing succeeds, calls fail in time.
func TestNoWitness(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	a := dial(t, []string{addr})
	expectFailure(t, "Swap with no witness", time.Second, func(ctx context.Context) (bool, error) {
		won, _, err := a.Swap(ctx, arbiter.View{}, arbiter.View{}.Next("a", ""))
		return won, err
	})
}

// A transaction that etcd commits but whose answer is lost: the caller gets
// an error (it must not act), and a retry with the same arguments reports
// the win.
func TestLostAnswer(t *testing.T) {
	w := startWitness(t, witness.Config{})
	p := testsupport.NewProxy(t, strings.TrimPrefix(w.ClientURL, "http://"))
	a := dial(t, []string{p.Addr()})
	direct := dial(t, []string{w.ClientURL})
	v1 := arbiter.View{}.Next("a", "b")
	v2 := v1.Next("b", "")
	mustSwap(t, a, arbiter.View{}, v1)

	p.DropAnswers(true)
	expectFailure(t, "Swap with its answer lost", time.Second, func(ctx context.Context) (bool, error) {
		won, _, err := a.Swap(ctx, v1, v2)
		return won, err
	})
	if got := mustCurrent(t, direct, 10*time.Second); got != v2 {
		t.Fatalf("the witness holds %v; the test meant the lost swap to be stored (want %v)", got, v2)
	}

	p.DropAnswers(false)
	p.Cut() // the client's connection is out of step; let it reconnect
	ctx, cancel := within(10 * time.Second)
	defer cancel()
	won, cur, err := a.Swap(ctx, v1, v2)
	if err != nil || !won || cur != v2 {
		t.Fatalf("retried Swap = won %v, cur %v, err %v; want a win", won, cur, err)
	}
	// A different proposal from the same old view loses, and sees v2.
	won, cur, err = direct.Swap(ctx, v1, v1.Next("a", ""))
	if err != nil || won || cur != v2 {
		t.Fatalf("competing Swap = won %v, cur %v, err %v; want a loss showing %v", won, cur, err, v2)
	}
}

// Three witnesses: the arbiter works with any two, and fails with one.
func TestThreeWitnesses(t *testing.T) {
	names := []string{"w1", "w2", "w3"}
	var listen, peer, cluster []string
	for _, n := range names {
		listen = append(listen, freePort(t))
		peer = append(peer, freePort(t))
		cluster = append(cluster, n+"=http://"+peer[len(peer)-1])
	}
	ws := make([]*witness.Process, 3)
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws[i] = startWitness(t, witness.Config{Name: n, Listen: listen[i], Peer: peer[i], InitialCluster: strings.Join(cluster, ",")})
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	a := dial(t, listen)
	v1 := arbiter.View{}.Next("a", "b")
	v2 := v1.Next("b", "")
	v3 := v2.Next("b", "c")
	mustSwap(t, a, arbiter.View{}, v1)

	// Kill the leader, the harder case: the others must elect a new one.
	leader := leaderOf(t, listen)
	t.Logf("killing the leader, %s", names[leader])
	ws[leader].Kill()
	start := time.Now()
	mustSwap(t, a, v1, v2)
	t.Logf("the swap right after the leader's death took %v", time.Since(start).Round(time.Millisecond))

	second := (leader + 1) % 3
	t.Logf("killing %s", names[second])
	ws[second].Kill()
	expectFailure(t, "Swap without quorum", 2*time.Second, func(ctx context.Context) (bool, error) {
		won, _, err := a.Swap(ctx, v2, v3)
		return won, err
	})
	expectFailure(t, "Current without quorum", 2*time.Second, func(ctx context.Context) (bool, error) {
		_, _, err := a.Current(ctx)
		return false, err
	})

	// With quorum back, the failed swap may or may not have been stored
	// (the survivor may have logged it); a retry settles it either way.
	ws[second] = restart(t, ws[second])
	if got := mustCurrent(t, a, 20*time.Second); got != v2 && got != v3 {
		t.Fatalf("after quorum returned the view is %v, want %v or %v", got, v2, v3)
	} else {
		t.Logf("the swap that failed without quorum was stored: %v", got == v3)
	}
	mustSwap(t, a, v2, v3)
}

// leaderOf returns the index of the member that the others call leader.
func leaderOf(t *testing.T, endpoints []string) int {
	t.Helper()
	c := raw(t, endpoints...)
	ids := make([]uint64, len(endpoints))
	var leader uint64
	for i, ep := range endpoints {
		ctx, cancel := within(10 * time.Second)
		st, err := c.Status(ctx, ep)
		cancel()
		if err != nil {
			t.Fatalf("status of %s: %v", ep, err)
		}
		ids[i], leader = st.Header.MemberId, st.Leader
	}
	for i, id := range ids {
		if id == leader {
			return i
		}
	}
	t.Fatalf("no member is the leader %x (members %x)", leader, ids)
	return 0
}

// Whatever is stored under the key, the arbiter reports it as an error and
// never panics or treats it as a view.
func TestGarbage(t *testing.T) {
	w := startWitness(t, witness.Config{})
	a := dial(t, []string{w.ClientURL})
	c := raw(t, w.ClientURL)
	key := arbiter.DefaultKeyPrefix + "pair"
	put := func(val string) {
		t.Helper()
		ctx, cancel := within(10 * time.Second)
		defer cancel()
		if _, err := c.Put(ctx, key, val); err != nil {
			t.Fatal(err)
		}
	}
	v1 := arbiter.View{}.Next("a", "b")
	for _, g := range []string{"", "garbage", "\x00\xff", `{"format":9,"generation":1,"primary":"a"}`, `{"format":1,"generation":1,"primary":"a","backup":"a"}`} {
		put(g)
		ctx, cancel := within(10 * time.Second)
		_, _, err := a.Current(ctx)
		if !errors.Is(err, arbiter.ErrCorrupt) || !strings.Contains(err.Error(), key) {
			t.Errorf("Current with %q stored: %v; want ErrCorrupt naming the key", g, err)
		}
		won, _, err := a.Swap(ctx, v1, v1.Next("b", ""))
		if won || !errors.Is(err, arbiter.ErrCorrupt) {
			t.Errorf("Swap with %q stored: won %v, err %v; want ErrCorrupt", g, won, err)
		}
		won, _, err = a.Swap(ctx, arbiter.View{}, v1)
		if won || !errors.Is(err, arbiter.ErrCorrupt) {
			t.Errorf("Swap from no view with %q stored: won %v, err %v; want ErrCorrupt", g, won, err)
		}
		cancel()
	}

	// A valid view in bytes that are not this version's encoding (another
	// field order, spaces) is still that view, and swaps.
	put(` { "primary": "a", "backup": "b", "generation": 1, "format": 1 } `)
	if got := mustCurrent(t, a, 10*time.Second); got != v1 {
		t.Fatalf("Current = %v, want %v", got, v1)
	}
	mustSwap(t, a, v1, v1.Next("b", ""))
}

// Swaps that lose: from no view when there is one, from a view that was
// never stored, and from an old view after a newer one.
func TestLosingSwaps(t *testing.T) {
	w := startWitness(t, witness.Config{})
	a := dial(t, []string{w.ClientURL})
	ctx, cancel := within(10 * time.Second)
	defer cancel()
	if won, cur, err := a.Swap(ctx, arbiter.View{Generation: 1, Primary: "x"}, arbiter.View{Generation: 2, Primary: "y"}); won || err != nil || !cur.IsZero() {
		t.Errorf("swap from a view never stored: won %v, cur %v, err %v", won, cur, err)
	}
	if _, ok, err := a.Current(ctx); ok || err != nil {
		t.Errorf("Current with no view: ok %v, err %v", ok, err)
	}
	v1 := arbiter.View{}.Next("a", "b")
	v2 := v1.Next("a", "")
	mustSwap(t, a, arbiter.View{}, v1)
	mustSwap(t, a, arbiter.View{}, v1) // idempotent
	mustSwap(t, a, v1, v2)
	for _, c := range []struct{ old, new arbiter.View }{
		{arbiter.View{}, arbiter.View{}.Next("b", "")},
		{v1, v1.Next("b", "")},
	} {
		if won, cur, err := a.Swap(ctx, c.old, c.new); won || err != nil || cur != v2 {
			t.Errorf("Swap(%v, %v) = won %v, cur %v, err %v; want a loss showing %v", c.old, c.new, won, cur, err, v2)
		}
	}
	// A bad argument is refused before anything is sent.
	if won, _, err := a.Swap(ctx, v2, v2); won || err == nil {
		t.Errorf("Swap(v, v) = won %v, err %v", won, err)
	}
	// Another cluster's view is another key.
	b, err := arbiter.DialEtcd([]string{w.ClientURL}, "other")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, ok, err := b.Current(ctx); ok || err != nil {
		t.Errorf("another cluster sees a view: ok %v, err %v", ok, err)
	}
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// benchSwap measures one won Swap after another, each a new generation.
func benchSwap(b *testing.B, endpoints []string) {
	a := dial(b, endpoints)
	ctx := context.Background()
	ids := [2]string{"a", "b"}
	var v arbiter.View
	for b.Loop() {
		next := v.Next(ids[v.Generation%2], ids[(v.Generation+1)%2])
		won, _, err := a.Swap(ctx, v, next)
		if err != nil || !won {
			b.Fatalf("Swap: won %v, err %v", won, err)
		}
		v = next
	}
}

// BenchmarkSwap: a swap on one local witness (one etcd transaction with
// its WAL fsync).
func BenchmarkSwap(b *testing.B) {
	w := startWitness(b, witness.Config{})
	benchSwap(b, []string{w.ClientURL})
}

// BenchmarkSwapThree: a swap on a three-witness cluster on loopback (the
// transaction also waits for a second member's fsync).
func BenchmarkSwapThree(b *testing.B) {
	names := []string{"w1", "w2", "w3"}
	var listen, peer, cluster []string
	for _, n := range names {
		listen = append(listen, freePort(b))
		peer = append(peer, freePort(b))
		cluster = append(cluster, n+"=http://"+peer[len(peer)-1])
	}
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			startWitness(b, witness.Config{Name: n, Listen: listen[i], Peer: peer[i], InitialCluster: strings.Join(cluster, ",")})
		}()
	}
	wg.Wait()
	benchSwap(b, listen)
}

// BenchmarkCurrent: a linearizable read of the view.
func BenchmarkCurrent(b *testing.B) {
	w := startWitness(b, witness.Config{})
	a := dial(b, []string{w.ClientURL})
	ctx := context.Background()
	if won, _, err := a.Swap(ctx, arbiter.View{}, arbiter.View{}.Next("a", "b")); !won || err != nil {
		b.Fatal(won, err)
	}
	for b.Loop() {
		if _, ok, err := a.Current(ctx); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkWitnessStart: from starting the process to its ready line, on
// a fresh data directory.
func BenchmarkWitnessStart(b *testing.B) {
	for b.Loop() {
		w := startWitness(b, witness.Config{Data: b.TempDir()})
		b.StopTimer()
		w.Stop()
		b.StartTimer()
	}
}
