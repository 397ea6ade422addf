package dataset

import (
	"fmt"
	"slices"
	"unicode/utf8"
)

// LengthStats summarises lengths (characters or tokens) of a set of passages.
type LengthStats struct {
	Count int     `json:"count"`
	Min   int     `json:"min"`
	Mean  float64 `json:"mean"`
	P50   int     `json:"p50"`
	P90   int     `json:"p90"`
	Max   int     `json:"max"`
	Total int64   `json:"total"`
	Unit  string  `json:"unit"`
}

// DescribeLengths computes the summary; percentiles are nearest-rank.
func DescribeLengths(lengths []int, unit string) LengthStats {
	s := LengthStats{Count: len(lengths), Unit: unit}
	if len(lengths) == 0 {
		return s
	}
	sorted := slices.Clone(lengths)
	slices.Sort(sorted)
	for _, n := range sorted {
		s.Total += int64(n)
	}
	s.Min, s.Max = sorted[0], sorted[len(sorted)-1]
	s.Mean = float64(s.Total) / float64(len(sorted))
	s.P50 = nearestRank(sorted, 0.50)
	s.P90 = nearestRank(sorted, 0.90)
	return s
}

func nearestRank(sorted []int, q float64) int {
	rank := int(q*float64(len(sorted))+0.999999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

func (s LengthStats) String() string {
	return fmt.Sprintf("%s: min %d, mean %.1f, p50 %d, p90 %d, max %d (total %d)", s.Unit, s.Min, s.Mean, s.P50, s.P90, s.Max, s.Total)
}

// CharLengths are the passages' lengths in Unicode characters, as Python's len counts them.
func CharLengths(passages []string) []int {
	lengths := make([]int, len(passages))
	for i, p := range passages {
		lengths[i] = utf8.RuneCountInString(p)
	}
	return lengths
}
