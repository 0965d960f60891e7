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
	"github.com/logferry/logferry/forward/elasticsearch"
	"github.com/logferry/logferry/forward/fluentd"
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
	// fluentd and elastic are nil when that destination is off.
	fluentd *fluentd.Config
	elastic *elasticsearch.Config
}

// knownOption reports whether key is an option of logferry or of dockerd.
func knownOption(key string) bool {
	return slices.Contains(fileOptions, key) || slices.Contains(dockerdOptions, key) ||
		slices.Contains(forward.BufferKeys, key) || slices.Contains(fluentd.Keys, key) ||
		slices.Contains(elasticsearch.Keys, key)
}

// parseOptions validates a container's --log-opt map, as json-file would,
// and refuses keys it does not know. Errors name the option, its value and
// what is accepted.
func parseOptions(info *Info) (options, error) {
	cfg := info.Config
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !knownOption(k) {
			return options{}, forward.OptionError(k, cfg[k], "unknown option; logferry accepts "+
				strings.Join(fileOptions, ", ")+", buffer-max-size, buffer-full, log-format, partial-merge and the fluentd-* and elasticsearch-* options in its README")
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

	fcfg, fon, err := fluentd.ParseConfig(cfg)
	if err != nil {
		return options{}, err
	}
	ecfg, eon, err := elasticsearch.ParseConfig(cfg)
	if err != nil {
		return options{}, err
	}
	if fon {
		o.fluentd = &fcfg
	}
	if eon {
		o.elastic = &ecfg
	}
	o.container = forward.Container{ID: info.ContainerID, Name: info.Name(), Tag: forwardTag, Extra: extra}
	return o, nil
}
