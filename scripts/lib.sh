# shellcheck shell=bash
# lib.sh holds what the scripts that start a server in the background share.
# Source it; it defines functions only.

# wait_ready NAME PID LOG CEILING CHECK...: waits until the command CHECK...
# succeeds, trying twice a second for at most CEILING seconds. It fails,
# with the last lines of LOG, as soon as process PID has exited, or when
# the time is up: a server that dies at start must fail the run at once, and
# one that hangs must not hold it until CI's time runs out. Messages go to
# standard error, so that a script's standard output stays its answer.
wait_ready() {
	local name=$1 pid=$2 log=$3 ceiling=$4 i
	shift 4
	for ((i = 0; i < 2 * ceiling; i++)); do
		if "$@"; then
			echo "$name: ready after $((i / 2))s (pid $pid)" >&2
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "$name: exited during start; last lines of $log:" >&2
			tail -n 30 "$log" >&2
			return 1
		fi
		sleep 0.5
	done
	echo "$name: not ready after ${ceiling}s; last lines of $log:" >&2
	tail -n 30 "$log" >&2
	return 1
}
