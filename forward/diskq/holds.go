package diskq

import (
	"fmt"
	"path/filepath"
)

// Holds tells whether the queue directory dir may still hold entries that
// no destination acknowledged: whether any generation in it has a segment
// file. It opens nothing, so it can be asked of a directory that a Queue
// owns, and a missing directory holds nothing.
func Holds(dir string) (bool, error) {
	segs, err := filepath.Glob(filepath.Join(dir, genPrefix+"*", "*"+segSuffix))
	if err != nil {
		return false, fmt.Errorf("list segments of %q: %w", dir, err)
	}
	return len(segs) > 0, nil
}
