package forward

// KeyLogFormat is "text" (the default), or "json" for a destination to
// take the fields of lines that are JSON objects; every destination
// honours it.
const KeyLogFormat = "log-format"

// SharedKeys are the keys of the options every destination shares, parsed
// once by ParseSharedOptions: the buffer's, log-format and partial-merge's.
var SharedKeys = []string{KeyBufferFull, KeyBufferMaxSize, KeyLogFormat, KeyPartialMerge, KeyPartialMergeTimeout}

// SharedOptions are the options every destination shares.
type SharedOptions struct {
	// Buffer bounds the disk buffer and sets the overflow policy.
	Buffer BufferConfig
	// JSONFields is set by log-format=json.
	JSONFields bool
	// PartialMerge reassembles the lines dockerd split, as Merge says.
	PartialMerge bool
	Merge        MergeConfig
}

// ParseSharedOptions validates the options every destination shares (see
// SharedKeys) among a container's --log-opt values, with one wording for
// every destination; absent options leave their field zero (the default).
// Other keys are ignored. Errors come from OptionError.
func ParseSharedOptions(opts map[string]string) (SharedOptions, error) {
	var sh SharedOptions
	var err error
	if sh.Buffer, err = ParseBufferOptions(opts); err != nil {
		return SharedOptions{}, err
	}
	if sh.PartialMerge, sh.Merge, err = ParseMergeOptions(opts); err != nil {
		return SharedOptions{}, err
	}
	switch v := opts[KeyLogFormat]; v {
	case "", "text":
	case "json":
		sh.JSONFields = true
	default:
		return SharedOptions{}, OptionError(KeyLogFormat, v, `must be "text" or "json"`)
	}
	return sh, nil
}
