package replication

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"ftvm/arbiter"
	"ftvm/internal/testsupport"
)

// TestPairRepair: a bit flipped in the backup's memory, then one in the
// primary's, in a page no one writes (the last page of RAM). The next
// state digest in the log differs in RAM only; instead of stopping as
// divergent, the backup has the primary pause, replays to it, and both
// compare every page: the backup takes the primary's (the primary assumed
// right, with no witness, and the report says so). The backup goes on
// following, checking later digests, and the console answers throughout.
func TestPairRepair(t *testing.T) {
	kernel, initrd := testsupport.DefaultGuest(t)
	dir := keys(t, "a", "b")
	arb := arbiter.NewMemory()
	a := newTestReplica(t, dir, "a", arb, nil)
	b := newTestReplica(t, dir, "b", arb, nil)
	a.startPrimary(t, kernel, initrd)
	a.con.waitFor(t, "console ready", 60*time.Second)
	b.startBackup(a.ln.Addr().String())
	b.waitRole(t, "backup", 30*time.Second)
	for i, faulty := range []*testReplica{b, a} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		f, err := faulty.r.InjectBitFlip(ctx, BitFlip{Page: 65535, Offset: 10 + i, Bit: 5})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("flipped %+v in %s", f, faulty.r.cfg.ID)
		// The guest works on (digests every 5 M instructions): the next
		// digest finds the difference.
		for k := 0; len(b.r.Status().Repairs) <= i; k++ {
			word := fmt.Sprintf("work-%d-%d", i, k)
			a.in <- []byte("echo " + word + "\n")
			a.con.waitFor(t, "= "+word, 30*time.Second)
			if k > 200 {
				t.Fatalf("no repair after %d commands; backup %q %s", k, b.r.Status().Role, b.r.Status().Error)
			}
		}
		rb := b.r.Status().Repairs[i]
		t.Logf("backup's report: %+v", rb)
		if len(rb.Pages) != 1 || rb.Pages[0] != 65535 || !strings.Contains(rb.Detail, "the primary is assumed right") {
			t.Fatalf("repair %+v", rb)
		}
		waitFor(t, 10*time.Second, "the primary's report", func() bool { return len(a.r.Status().Repairs) == i+1 })
		if ra := a.r.Status().Repairs[i]; !strings.Contains(ra.Detail, "no witness, the primary is assumed right") {
			t.Fatalf("the primary's report: %+v", ra)
		}
	}
	// Later digests agree: the backup still follows after more of them.
	for k := range 20 {
		word := fmt.Sprintf("after-%d", k)
		a.in <- []byte("echo " + word + "\n")
		a.con.waitFor(t, "= "+word, 30*time.Second)
	}
	if st := b.r.Status(); st.Role != "backup" || st.Error != "" {
		t.Fatalf("the backup after the repairs: %q %q", st.Role, st.Error)
	}
}
