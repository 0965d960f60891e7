//go:build !amd64 || purego

package rotate

import (
	"encoding/binary"
	"math/bits"
)

// plainBlock is how many bytes plainPrefix reads at a time.
const plainBlock = 8

// plainPrefix returns the length of the longest prefix of s whose bytes all
// appear unescaped in a JSON string (printable ASCII except quote,
// backslash, <, > and &), or less when that prefix reaches into the last
// len(s)%plainBlock bytes, which it leaves to the caller. It reads eight
// bytes at a time.
func plainPrefix(s []byte) int {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	n := 0
	for ; len(s)-n >= 8; n += 8 {
		x := binary.LittleEndian.Uint64(s[n:])
		// The high bit of a byte of bad is set where that byte of x is
		// not ASCII or is a control character (a borrow only leaves a
		// byte that is one itself), or is " or & (x|4 is 0x26), < or >
		// (x|2 is 0x3e), or a backslash. The zero-byte test y-1 & ^y can
		// also mark bytes above a zero byte, never below the first.
		a := (x | ones*4) ^ ones*0x26
		b := (x | ones*2) ^ ones*0x3e
		c := x ^ ones*'\\'
		bad := (x|(x-ones*0x20))&highs |
			(a-ones)&^a&highs | (b-ones)&^b&highs | (c-ones)&^c&highs
		if bad != 0 {
			return n + bits.TrailingZeros64(bad)/8
		}
	}
	return n
}
