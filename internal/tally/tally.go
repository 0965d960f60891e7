// Package tally checks numbered items for loss and duplication: tests
// number the lines they log, count what a destination received, and ask
// which numbers are missing or came more than once.
package tally

// Gaps returns, in order, the numbers from from to to (inclusive) that
// counts lacks and those it has more than once.
func Gaps(counts map[int]int, from, to int) (missing, repeated []int) {
	for n := from; n <= to; n++ {
		switch counts[n] {
		case 0:
			missing = append(missing, n)
		case 1:
		default:
			repeated = append(repeated, n)
		}
	}
	return missing, repeated
}

// Count returns how many times each number occurs in nums.
func Count(nums []int) map[int]int {
	counts := make(map[int]int, len(nums))
	for _, n := range nums {
		counts[n]++
	}
	return counts
}
