package bench

import (
	"strings"
	"testing"
)

// TestMedian: an odd count's middle value, an even count's mean of the two
// middle ones (a comparison row with two of three rounds used to show the
// higher as its median).
func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{9, 1, 5}, 5},
		{[]float64{268, 526}, 397},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// TestCompareGuestsRefused: the comparison refuses guests it has no load
// for, before it starts anything.
func TestCompareGuestsRefused(t *testing.T) {
	for _, g := range []string{"nginx", "", "KV", "qemu"} {
		err := CheckCompareGuests([]string{"kv", g})
		if err == nil || !strings.Contains(err.Error(), "unknown guest") {
			t.Errorf("CheckCompareGuests(kv, %q) = %v, want a refusal naming an unknown guest", g, err)
		}
	}
}
