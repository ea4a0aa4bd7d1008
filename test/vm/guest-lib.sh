# guest-lib.sh — vmrun.sh's plumbing: settings, the job directory the guest
# reads its command from and writes its exit code to, the console reader,
# and the verdict. Sourced; RUNNER (the name for messages) must be set first.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$HERE/../.." && pwd -P)
MEM=${TSN_VM_MEM:-2048}
TIMEOUT=${TSN_VM_TIMEOUT:-600}
OUT=${TSN_VM_OUT:-$REPO/.tmp/vm-out/$(date +%Y%m%d-%H%M%S)-$$}

loud() {   # a failure CI readers must not miss
  printf '\n%s\n' "######################################################################" >&2
  printf '%s: %s\n' "$RUNNER" "$@" >&2
  printf '%s\n\n' "######################################################################" >&2
}

# The job dir: cmd and env in, rc and out/ back. The only host dir the guest may write.
JOB=$(mktemp -d /tmp/tsn-vmjob.XXXXXX)
VM_PID= ; READER_PID=
cleanup() {   # no set -e here: a failing kill/wait must not skip the rm
  set +e
  [ -n "$VM_PID" ] && { kill "$VM_PID"; wait "$VM_PID"; } 2>/dev/null
  [ -n "$READER_PID" ] && wait "$READER_PID" 2>/dev/null
  rm -rf "$JOB"
}
trap cleanup EXIT
trap 'loud "interrupted"; exit 125' INT TERM HUP

# Writes the command and the pass-through environment, quoted for the guest's bash.
write_job() {
  mkdir -p "$JOB/out" "$OUT"
  echo "$RUNNER: console and artifacts -> $OUT" >&2
  printf '%q ' "$@" > "$JOB/cmd"
  { for v in $(compgen -e | grep -E '^(TSN_|CI$)'); do printf 'export %s=%q\n' "$v" "${!v}"; done
    printf 'export TSN_IN_VM=1 TSN_VM_ARTIFACTS=/job/out TSN_VM_REPO=%q\n' "$REPO"
  } > "$JOB/env"
}

# The console goes through a FIFO so we know both PIDs: the guest's (to stop
# it on INT/TERM) and the reader's (to wait until all output is written).
# $1: an extended regexp of console noise not worth showing (still saved).
start_console() {
  mkfifo "$JOB/console"
  tee "$OUT/console.log" < "$JOB/console" | grep --line-buffered -v -E "$1" &
  READER_PID=$!
}

# After the guest is gone ($1: its exit status, $2: seconds it ran): copies
# out/ back and exits with the command's code, 125 when it never reported one.
finish() {
  wait "$READER_PID" || true; READER_PID=
  cp -r "$JOB/out/." "$OUT/"
  echo "$RUNNER: guest wall time ${2}s (mem ${MEM}M, console saved to $OUT/console.log)" >&2
  if [ ! -s "$JOB/rc" ]; then
    local why="the guest did not boot or crashed (exit $1)"
    [ "$1" = 124 ] && why="killed by TSN_VM_TIMEOUT=${TIMEOUT}s"
    loud "FAILED: the guest never reported an exit code: $why." "See $OUT/console.log. Exit 125."
    exit 125
  fi
  exit "$(cat "$JOB/rc")"
}
