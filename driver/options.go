package driver

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	units "github.com/docker/go-units"

	"github.com/logferry/logferry/forward"
	"github.com/logferry/logferry/rotate"
)

// Option keys accepted in --log-opt, with json-file's meaning.
const (
	optMaxSize     = "max-size"
	optMaxFile     = "max-file"
	optCompress    = "compress"
	optLabels      = "labels"
	optLabelsRegex = "labels-regex"
	optEnv         = "env"
	optEnvRegex    = "env-regex"
	optTag         = "tag"
)

// fileOptions are the keys of the local files, json-file's own.
var fileOptions = []string{
	optCompress, optEnv, optEnvRegex, optLabels, optLabelsRegex, optMaxFile, optMaxSize, optTag,
}

// dockerdOptions are handled by dockerd itself, which passes them on to
// plugins too: "mode" and "max-buffer-size" of every driver, and the
// dual-logging cache options it merges in from daemon.json.
var dockerdOptions = []string{
	"cache-compress", "cache-disabled", "cache-max-file", "cache-max-size", "max-buffer-size", "mode",
}

// ErrInvalidOption is wrapped by every error about a --log-opt.
var ErrInvalidOption = forward.ErrInvalidOption

// options is what a container's --log-opt values configure.
type options struct {
	files rotate.Config
	// attrs is the marshalled "attrs" object of each record, nil for none.
	attrs []byte
	// container describes the container to the destinations.
	container forward.Container
	// dests are the destinations the options turn on, in the order of
	// Config.Destinations.
	dests []configured
}

// configured is a destination a container's options turn on.
type configured struct {
	name  string
	start forward.Starter
}

// knownOption reports whether key is an option of logferry, of one of
// dests or of dockerd.
func knownOption(key string, dests []forward.Destination) bool {
	if slices.Contains(fileOptions, key) || slices.Contains(dockerdOptions, key) || slices.Contains(forward.SharedKeys, key) {
		return true
	}
	for _, d := range dests {
		if slices.Contains(d.Keys, key) {
			return true
		}
	}
	return false
}

// OptionKeys returns every --log-opt key the plugin accepts with dests,
// sorted: the files', dockerd's, the ones every destination shares and each
// destination's own. The documentation is checked against it.
func OptionKeys(dests []forward.Destination) []string {
	keys := slices.Concat(fileOptions, dockerdOptions, forward.SharedKeys)
	for _, d := range dests {
		keys = append(keys, d.Keys...)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// acceptedOptions describes the options logferry accepts with dests, for
// the error about an unknown one: the file's and the shared ones by name,
// each destination's own by prefix.
func acceptedOptions(dests []forward.Destination) string {
	named := slices.Clone(fileOptions)
	named = append(named, forward.SharedKeys...)
	var prefixes []string
	for _, d := range dests {
		for _, k := range d.Keys {
			if !strings.HasPrefix(k, d.Name+"-") && !slices.Contains(named, k) {
				named = append(named, k)
			}
		}
		prefixes = append(prefixes, d.Name+"-*")
	}
	s := strings.Join(named, ", ")
	if len(prefixes) > 0 {
		s += " and the " + strings.Join(prefixes, " and ") + " options in its README"
	}
	return s
}

// parseOptions validates a container's --log-opt map, as json-file would,
// and those of dests, and refuses keys none of them knows. Errors name the
// option, its value and what is accepted.
func parseOptions(info *Info, dests []forward.Destination) (options, error) {
	cfg := info.Config
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !knownOption(k, dests) {
			return options{}, forward.OptionError(k, cfg[k], "unknown option; logferry accepts "+acceptedOptions(dests))
		}
	}

	var o options
	if v, ok := cfg[optMaxSize]; ok {
		n, err := units.FromHumanSize(v)
		if err != nil || n <= 0 {
			return options{}, forward.OptionError(optMaxSize, v, "must be a positive size such as 500k, 10m or 1g")
		}
		o.files.MaxSize = n
	}
	o.files.MaxFiles = 1
	if v, ok := cfg[optMaxFile]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return options{}, forward.OptionError(optMaxFile, v, "must be a whole number of 1 or more")
		}
		o.files.MaxFiles = n
	}
	if v, ok := cfg[optCompress]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return options{}, forward.OptionError(optCompress, v, "must be true or false")
		}
		if b && (o.files.MaxFiles < 2 || o.files.MaxSize == 0) {
			return options{}, forward.OptionError(optCompress, v, "needs max-size and a max-file of 2 or more")
		}
		o.files.Compress = b
	}
	for _, k := range []string{optLabelsRegex, optEnvRegex} {
		if _, err := regexp.Compile(cfg[k]); err != nil {
			return options{}, forward.OptionError(k, cfg[k], fmt.Sprintf("must be a regular expression (%v)", err))
		}
	}

	extra := extraAttributes(cfg, info)
	attrs := maps.Clone(extra)
	forwardTag := info.ID() // Docker's fluentd driver defaults to {{.ID}}
	if tmpl := cfg[optTag]; tmpl != "" {
		tag, err := expandTag(tmpl, info)
		if err != nil {
			return options{}, forward.OptionError(optTag, tmpl, fmt.Sprintf("must be a log tag template such as {{.Name}} or {{.ID}} (%v)", err))
		}
		if tag != "" {
			attrs["tag"] = tag
		}
		forwardTag = tag
	}
	if len(attrs) > 0 {
		b, err := json.Marshal(attrs)
		if err != nil {
			return options{}, fmt.Errorf("marshal attrs: %w", err)
		}
		o.attrs = b
	}

	for _, d := range dests {
		start, err := d.Configure(cfg)
		if err != nil {
			return options{}, err
		}
		if start != nil {
			o.dests = append(o.dests, configured{name: d.Name, start: start})
		}
	}
	o.container = forward.Container{ID: info.ContainerID, Name: info.Name(), Tag: forwardTag, Extra: extra}
	return o, nil
}
