package loadgen

import "math/bits"

// hist is a log-linear histogram of durations in nanoseconds: 128 buckets per
// power of two, so a percentile is read with under 1% error, in 64 KiB and
// with no allocation per sample.
type hist struct {
	counts [(64 - subBits + 1) << subBits]uint64
	n      uint64
	max    uint64
}

const subBits = 7

func bucketOf(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	k := bits.Len64(v) - 1 // v in [2^k, 2^(k+1)), k >= subBits
	return (k-subBits+1)<<subBits + int((v>>(k-subBits))&(1<<subBits-1))
}

// lowOf is the smallest value of bucket i, and widthOf its width.
func lowOf(i int) uint64 {
	if i < 2<<subBits {
		return uint64(i)
	}
	oct := i>>subBits - 1
	return uint64(1<<subBits+i&(1<<subBits-1)) << oct
}

func widthOf(i int) uint64 {
	if i < 2<<subBits {
		return 1
	}
	return 1 << (i>>subBits - 1)
}

func (h *hist) record(ns int64) {
	if ns < 0 {
		ns = 0
	}
	v := uint64(ns)
	h.counts[bucketOf(v)]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

func (h *hist) reset() { *h = hist{} }

// quantile returns the q-quantile (0..1) in nanoseconds, the middle of its bucket.
func (h *hist) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n-1)) + 1
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := float64(lowOf(i)) + float64(widthOf(i)-1)/2
			if v > float64(h.max) {
				v = float64(h.max)
			}
			return v
		}
	}
	return float64(h.max)
}
