// Package driver speaks Docker's logging-plugin protocol: it answers the
// /LogDriver.* endpoints, validates --log-opt values, owns one stream per
// container FIFO (decode frames, encode json-file records, hand them to the
// rotating files) and serves "docker logs" from those files.
package driver
