# Sourced (not run) by the scripts that run the project's Python in its venv:
#   . "$(dirname "$(readlink -f "$0")")/lib/venv.bash"
# It sets ROOT (the checkout) and VENV ($GPSNET_VENV, else $ROOT/.venv), stops with a message
# naming the script where scripts/setup has not made the venv, and defines
#   one_core_exports         prints the shell text that sets the OpenMP and BLAS thread variables
#                            for one core (python/gpsnet/threads.py shell_exports(1)); fails,
#                            saying so, where the venv cannot import gpsnet
#   one_core                 sets them in this shell (fails as one_core_exports does)
#   venv_module MODULE ARGS  exec the venv's python -m MODULE ARGS
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
VENV="${GPSNET_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "$(basename "$0"): no project environment at $VENV; run scripts/setup first" >&2
  exit 1
fi

one_core_exports() {
  "$VENV/bin/python" -c 'import gpsnet.threads as t; print(t.shell_exports(1))' || {
    echo "$(basename "$0"): the Python of $VENV cannot import gpsnet; run scripts/setup" >&2
    return 1
  }
}

one_core() {
  local exports
  exports=$(one_core_exports) || return 1
  eval "$exports"
}

venv_module() {
  exec "$VENV/bin/python" -m "$@"
}
