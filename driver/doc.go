// Package driver speaks Docker's logging-plugin protocol: it answers the
// /LogDriver.* endpoints, validates --log-opt values, owns one stream per
// container FIFO (decode frames, encode json-file records, hand them to the
// rotating files and to the destinations the options turn on) and serves
// "docker logs" from those files. It recovers the streams of a restarted
// plugin, delivers what earlier processes left in the destinations' disk
// buffers, removes the files of containers that are gone, and serves the
// plugin's metrics.
//
// It knows no destination by name: Config.Destinations lists them (see
// forward.Destination), each with its options, its sink and its counters.
package driver
