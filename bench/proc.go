//go:build bench

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, 100 on
// every Linux architecture Docker runs on.
const userHZ = 100

// cpuTime returns the user plus system CPU time pid has used, all its
// threads included, from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of %d: %w", pid, err)
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu time of %d: malformed stat %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu time of %d: malformed stat %q", pid, b)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("cpu time of %d: %w", pid, err)
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// peakRSS returns pid's peak resident set size (VmHWM) in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("peak rss of %d: %w", pid, err)
	}
	for line := range strings.Lines(string(b)) {
		v, ok := strings.CutPrefix(line, "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("peak rss of %d: %w", pid, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("peak rss of %d: no VmHWM in status", pid)
}

// resetPeakRSS sets pid's VmHWM back to its current RSS (Linux 4.0 and
// later), so that the next peakRSS is the peak since now.
func resetPeakRSS(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak rss of %d: %w", pid, err)
	}
	return nil
}

// dockerdPID returns the process ID of the dockerd that serves socket: the
// one dockerd whose command line names it (several engines may run side by
// side, each with its own socket), else the one of /var/run/docker.pid,
// else the only dockerd.
func dockerdPID(socket string) (int, error) {
	pids, err := findProcs(func(_ int, comm string, args []string) bool {
		return comm == "dockerd" && slices.ContainsFunc(args, func(a string) bool { return strings.HasSuffix(a, socket) })
	})
	if err == nil && len(pids) == 1 {
		return pids[0], nil
	}
	if b, err := os.ReadFile("/var/run/docker.pid"); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && commIs(pid, "dockerd") {
			return pid, nil
		}
	}
	pids, err = findProcs(func(pid int, comm string, _ []string) bool { return comm == "dockerd" })
	if err != nil {
		return 0, err
	}
	if len(pids) != 1 {
		return 0, fmt.Errorf("find dockerd: %d processes named dockerd", len(pids))
	}
	return pids[0], nil
}

// containerdSockets are where the containerd that runs dockerd's plugins
// listens: its own (dockerd started it) or the system's.
var containerdSockets = []string{"/var/run/docker/containerd/containerd.sock", "/run/containerd/containerd.sock"}

// pluginPID returns the process ID of a managed plugin. dockerd runs each
// plugin as a containerd task named by the plugin ID in the "plugins.moby"
// namespace: ctr lists it with its PID. Without ctr, the task's shim is
// found by its command line and the plugin is its child.
func pluginPID(ctx context.Context, pluginID string) (int, error) {
	for _, sock := range containerdSockets {
		if _, err := os.Stat(sock); err != nil {
			continue
		}
		out, err := exec.CommandContext(ctx, "ctr", "--address", sock, "-n", "plugins.moby", "tasks", "ls").Output()
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(out)) {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == pluginID {
				if pid, err := strconv.Atoi(f[1]); err == nil && pid > 0 {
					return pid, nil
				}
			}
		}
	}
	shims, err := findProcs(func(_ int, _ string, args []string) bool {
		return hasArgs(args, "-namespace", "plugins.moby") && hasArgs(args, "-id", pluginID)
	})
	if err != nil {
		return 0, err
	}
	if len(shims) == 1 {
		kids, err := findProcs(func(pid int, _ string, _ []string) bool { return parentPID(pid) == shims[0] })
		if err != nil {
			return 0, err
		}
		if len(kids) == 1 {
			return kids[0], nil
		}
	}
	return 0, fmt.Errorf("find the process of plugin %.12s: not among containerd's plugins.moby tasks", pluginID)
}

// hasArgs reports whether args holds flag followed by value.
func hasArgs(args []string, flag, value string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag && args[i+1] == value {
			return true
		}
	}
	return false
}

// commIs reports whether pid runs a command named comm.
func commIs(pid int, comm string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(b)) == comm
}

// parentPID returns pid's parent, or 0.
func parentPID(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// findProcs returns the processes for which match is true.
func findProcs(match func(pid int, comm string, args []string) bool) ([]int, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, dir := range dirs {
		pid, err := strconv.Atoi(filepath.Base(dir))
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(dir + "/comm")
		if err != nil {
			continue // gone
		}
		cmdline, _ := os.ReadFile(dir + "/cmdline")
		args := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
		if match(pid, strings.TrimSpace(string(comm)), args) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
