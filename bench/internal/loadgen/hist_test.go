package loadgen

import (
	"math"
	"testing"
)

func TestHistBuckets(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 255, 256, 1000, 12345, 1 << 20, 987654321, 1 << 40} {
		i := bucketOf(v)
		lo, w := lowOf(i), widthOf(i)
		if v < lo || v >= lo+w {
			t.Fatalf("v=%d bucket %d [%d,%d)", v, i, lo, lo+w)
		}
	}
	var h hist
	for i := 1; i <= 100000; i++ {
		h.record(int64(i) * 1000)
	}
	for _, q := range []float64{0.5, 0.99, 0.999} {
		want := q * 100000 * 1000
		if got := h.quantile(q); math.Abs(got-want)/want > 0.01 {
			t.Errorf("q%.3f = %.0f, want %.0f", q, got, want)
		}
	}
}
