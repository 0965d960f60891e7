//go:build !purego

package rotate

// plainBlock is how many bytes plainPrefix reads at a time.
const plainBlock = 16

// plainPrefix returns the length of the longest prefix of s whose bytes all
// appear unescaped in a JSON string (printable ASCII except quote,
// backslash, <, > and &), or 0 when s is shorter than plainBlock, which it
// leaves to the caller. It reads 16 bytes at a time with SSE2 (in
// plain_amd64.s), the last block overlapping the one before.
//
//go:noescape
func plainPrefix(s []byte) int
