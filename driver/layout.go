package driver

import "path/filepath"

// layout is where the plugin keeps what it writes under its root mount,
// the one place that spells it out:
//
//	containers/<id>/<id>-json.log*     the container's files, json-file's layout
//	containers/<id>/...                what destinations keep beside them
//	                                   (Elasticsearch's dead letters)
//	buffer/<id>/<destination>/         a destination's disk buffer
//	buffer/<id>/container.json         the container those buffers belong to
//
// The state of running streams, for a restarted plugin, is elsewhere
// (Config.StateDir).
type layout struct{ root string }

// containers is the directory of every container's files.
func (l layout) containers() string { return filepath.Join(l.root, "containers") }

// logDir is the directory of container id's files.
func (l layout) logDir(id string) string { return filepath.Join(l.containers(), id) }

// logFile is container id's current log file.
func (l layout) logFile(id string) string { return filepath.Join(l.logDir(id), id+"-json.log") }

// buffers is the directory of every container's disk buffers.
func (l layout) buffers() string { return filepath.Join(l.root, "buffer") }

// bufferDir is the directory of container id's disk buffers.
func (l layout) bufferDir(id string) string { return filepath.Join(l.buffers(), id) }

// destBuffer is the disk buffer of container id for destination dest.
func (l layout) destBuffer(id, dest string) string { return filepath.Join(l.bufferDir(id), dest) }

// bufferInfo records the container whose events the buffers of id hold,
// so that they can be delivered when no stream of the container is open:
// after it stopped while a destination was down, or after a plugin
// restart.
func (l layout) bufferInfo(id string) string { return filepath.Join(l.bufferDir(id), "container.json") }
