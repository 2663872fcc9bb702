package report

import (
	"fmt"
	"math"
)

// Size formats a payload size: 64 B, 1 KiB, 16 KiB.
func Size(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// num formats a rate or count compactly: 812, 12.3k, 1.25M.
func num(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.2fk", v/1e3)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// us formats microseconds.
func us(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.1f ms", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.2f ms", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0f µs", v)
	}
	return fmt.Sprintf("%.1f µs", v)
}

func kib(v float64) string { return fmt.Sprintf("%.2f KiB", v/1024) }

// fixed2 formats CPU µs per message and system calls per message.
func fixed2(v float64) string { return fmt.Sprintf("%.2f", v) }

func fixed0(v float64) string { return fmt.Sprintf("%.0f", v) }

func percent(v float64) string { return fmt.Sprintf("%.0f%%", 100*v) }

func nsop(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.0f ns", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ns", v)
	}
	return fmt.Sprintf("%.2f ns", v)
}

// cell renders "median (min–max)" or why there is no value.
func cell(s stat, format func(float64) string, spread bool) string {
	switch {
	case s.ok() && spread && s.n > 1:
		return fmt.Sprintf("%s (%s–%s)", format(s.med), format(s.min), format(s.max))
	case s.ok():
		return format(s.med)
	case s.na:
		return "n/a"
	case s.err != "":
		return "failed"
	}
	return "–"
}

func ratio(v, ref float64) string {
	if math.IsNaN(ref) || ref == 0 || math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v/ref)
}
