# Shared by bench/run-compare and bench/run-scale. Source it; do not run it.

# Sets SERVER and LOAD to the commands that pin the servers to CPU 0 and the load to
# the other cores, when the machine has two or more and PIN is not 0 (else both empty).
pin_cores() {
  SERVER=()
  LOAD=()
  if [ "${PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    SERVER=(taskset -c 0)
    LOAD=(taskset -c "1-$(($(nproc) - 1))")
  fi
}

# write_results LINES OUT [NAME=VALUE ...]: the JSON document of a run: the JSON lines
# of LINES as "rows", the date, the machine, the keyd commit, where the servers ran
# (SERVER), and each NAME=VALUE (a number when it reads as one).
write_results() {
  local lines=$1 out=$2
  shift 2
  python3 - "$lines" "$out" "${SERVER[*]:-any CPU}" "$@" <<'PY'
import json, os, platform, subprocess, sys, time
lines, out, pinning, *extra = sys.argv[1:]
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
              if l.startswith("model name")), "?")
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                        text=True).stdout.strip()
doc = {
    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "machine": {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release()},
    "keyd_commit": commit, "servers_on": pinning,
}
for pair in extra:
    name, value = pair.split("=", 1)
    doc[name] = int(value) if value.isdigit() else value
doc["rows"] = [json.loads(l) for l in open(lines) if l.startswith("{")]
json.dump(doc, open(out, "w"), indent=1)
PY
}
