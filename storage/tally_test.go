package storage

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSummariseSelectsAsSortingWould: the percentiles and maximum summarise selects are those
// of the sorted durations (Percentile), for sizes around the percentiles' boundaries, many
// equal durations, and durations already in order or reversed.
func TestSummariseSelectsAsSortingWould(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var cases [][]float64
	for n := 1; n <= 41; n++ {
		cases = append(cases, randomDurations(r, n, 1000), randomDurations(r, n, 3))
	}
	big := randomDurations(r, 100_000, 1e6)
	ascending := slices.Clone(big)
	slices.Sort(ascending)
	descending := slices.Clone(ascending)
	slices.Reverse(descending)
	cases = append(cases, big, ascending, descending, randomDurations(r, 100_000, 2), make([]float64, 5000))
	for _, xs := range cases {
		sorted := slices.Clone(xs)
		slices.Sort(sorted)
		want := Durations{P50: Percentile(sorted, 0.5), P90: Percentile(sorted, 0.9), Max: sorted[len(sorted)-1]}
		got := summarise(slices.Clone(xs))
		if got == nil || *got != want {
			t.Errorf("%d durations: got %+v, want %+v", len(xs), got, want)
		}
	}
	if got := summarise(nil); got != nil {
		t.Errorf("no durations: got %+v, want nil", got)
	}
}

// randomDurations is n durations in [0, distinct) seconds: to a microsecond, or whole seconds
// (few distinct values, many equal) when distinct is under 10.
func randomDurations(r *rand.Rand, n int, distinct float64) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = float64(int(r.Float64()*distinct*1e6)) / 1e6
		if distinct < 10 {
			xs[i] = float64(r.IntN(int(distinct)))
		}
	}
	return xs
}
