#!/usr/bin/env bash
# Install edge-detector on a vehicle computer (systemd service), or set up a development environment (--dev).
set -Eeuo pipefail

PREFIX=/opt/edge-detector
STATE_DIR=/var/lib/edge-detector
CONF_DIR=/etc/edge-detector
UNIT_DIR=/etc/systemd/system
UNIT=edge-detector.service
DROPIN_DIR=$UNIT_DIR/$UNIT.d
DROPIN=$DROPIN_DIR/10-install.conf
BIN_LINK=/usr/local/bin/edge
SERVICE_USER=edge-detector
MODEL=""
CONFIG=""
WHEELHOUSE=""
ORT=auto
START=1
PURGE=0
MODE=install
VENV=""
SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
  cat <<EOF
Usage: install.sh [OPTIONS]        (as root; through sudo where sudo exists)

Installs edge-detector as a systemd service: apt packages, a system user '$SERVICE_USER' (in whichever of the
groups video, render, dialout exist), a virtual environment under the prefix, 'edge' on the PATH
($BIN_LINK), the config in $CONF_DIR, the unit in $UNIT_DIR with a drop-in naming the groups and device
nodes this machine has, a model in $STATE_DIR/models, then 'systemctl enable --now $UNIT'. The last line
says whether the service is running. Safe to run again (idempotent).

Options:
  --prefix DIR       install under DIR (default $PREFIX)
  --model PATH       ONNX model to install (default: export yolov8n with ultralytics if available and online)
  --config FILE      install FILE as $CONF_DIR/edge.toml (the previous one is kept as edge.toml.bak);
                     without it an existing edge.toml is kept, else the default one is installed
  --cpu | --gpu      force the CPU build of onnxruntime, or onnxruntime-gpu (x86_64); default: the GPU build
                     where an NVIDIA driver is present (nvidia-smi works), the CPU build elsewhere
  --wheelhouse DIR   install Python packages only from the wheels in DIR (no index, no network)
  --no-start         install and enable, but do not start the service
  --uninstall        stop and remove the service, the unit and its drop-ins from this script, the virtual
                     environment, 'edge' on the PATH and the user. Keeps $STATE_DIR (the spool of
                     events not yet delivered, models; then owned by root) and $CONF_DIR
  --purge            with --uninstall: remove $STATE_DIR, $CONF_DIR and every drop-in of the unit too
  --dev [VENV]       development set-up only: apt packages for tests, VENV (default ./.venv) with the
                     project installed editable plus test extras; no user, no service
  -h, --help         this help

GPU: on x86_64 with an NVIDIA driver onnxruntime-gpu is installed (CUDA, TensorRT when its libraries are
present); elsewhere the CPU onnxruntime. On Jetson install JetPack's onnxruntime-gpu wheel into the virtual
environment afterwards, in place of the CPU build:
  $PREFIX/venv/bin/pip uninstall -y onnxruntime && $PREFIX/venv/bin/pip install onnxruntime_gpu-<ver>-cp3X-linux_aarch64.whl
EOF
}

log() { printf 'install.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# set -e stops at the first failed command: say which, so the last line is never a bare exit status
trap 'rc=$?; log "error: failed (exit $rc) at line $LINENO: $BASH_COMMAND"; exit $rc' ERR

ARGS=("$@")
needs_value() {  # $1 = option, $2 = what follows it
  [[ -n "${2:-}" && "$2" != -* ]] || die "$1 needs a value"
}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --prefix) needs_value "$@"; PREFIX="$2"; shift 2 ;;
    --model) needs_value "$@"; MODEL="$2"; shift 2 ;;
    --config) needs_value "$@"; CONFIG="$2"; shift 2 ;;
    --wheelhouse) needs_value "$@"; WHEELHOUSE="$2"; shift 2 ;;
    --cpu) ORT=cpu; shift ;;
    --gpu) ORT=gpu; shift ;;
    --no-start) START=0; shift ;;
    --uninstall) MODE=uninstall; shift ;;
    --purge) PURGE=1; shift ;;
    --dev) MODE=dev; if [[ $# -gt 1 && "$2" != -* ]]; then VENV="$2"; shift; fi; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done
[[ $PURGE -eq 0 || $MODE == uninstall ]] || die "--purge goes with --uninstall"
[[ -z "$WHEELHOUSE" || -d "$WHEELHOUSE" ]] || die "--wheelhouse $WHEELHOUSE: no such directory"
[[ -z "$CONFIG" || -f "$CONFIG" ]] || die "--config $CONFIG: no such file"

# Root runs everything directly; anyone else goes through sudo, and only where sudo exists.
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || die "run as root (there is no sudo here): su -c '$0 ${ARGS[*]}'"
  SUDO=sudo
fi

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} with your package manager"
  log "installing apt packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# An interpreter the service can run: the unit's ProtectHome=yes hides /root, /home and /run/user, so one
# there (pyenv, conda, a user's build) would fail the unit with 203/EXEC. The dev set-up may use any.
pick_python() {  # $1 = "service" or "dev"; sets PY (no subshell: die must end the script, not a $(...))
  local py real
  for py in /usr/bin/python3.13 /usr/bin/python3.12 /usr/bin/python3.11 /usr/bin/python3 \
            /usr/local/bin/python3.13 /usr/local/bin/python3.12 /usr/local/bin/python3.11 \
            python3.13 python3.12 python3.11 python3; do
    command -v "$py" >/dev/null || continue
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || continue
    real=$("$py" -c 'import os, sys; print(os.path.realpath(sys.executable))' 2>/dev/null) || continue
    if [[ $1 == service && $real =~ ^(/root|/home|/run/user)(/|$) ]]; then continue; fi
    PY="$py"; return
  done
  [[ $1 == service ]] && die "Python 3.11 or newer is required outside /root and /home (the unit's ProtectHome=yes hides them): apt-get install python3"
  die "Python 3.11 or newer is required"
}

# Which onnxruntime (sets FLAVOUR): the two builds install the same module and must never share a venv.
ort_flavour() {
  case "$ORT" in
    cpu) FLAVOUR=cpu ;;
    gpu) [[ $(uname -m) == x86_64 ]] || die "--gpu: PyPI's onnxruntime-gpu is x86_64 only; on Jetson install JetPack's wheel (see --help)"
         FLAVOUR=gpu ;;
    *) if [[ $(uname -m) == x86_64 ]] && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
         FLAVOUR=gpu
       else
         FLAVOUR=cpu
       fi ;;
  esac
}

pip_quiet() {  # pip's output only when it fails (its build back-ends' warnings are noise to an installer)
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  [[ $rc -eq 0 ]] || printf '%s\n' "$out" | tail -n 40 >&2
  return $rc
}

make_venv() {  # $1 = venv dir, $2 = "service" or "dev", $3 = extras (comma-separated), $4 = editable ("-e" or "")
  local venv="$1" extras="$3" editable="$4" flavour other pip_opts=()
  ort_flavour
  flavour=$FLAVOUR
  pick_python "$2"
  if [[ ! -x "$venv/bin/python" ]]; then
    "$PY" -m venv "$venv" 2>/dev/null || { apt_install python3-venv; "$PY" -m venv "$venv"; }
  fi
  if [[ -n "$WHEELHOUSE" ]]; then
    pip_opts=(--no-index --find-links "$WHEELHOUSE" --no-cache-dir)
  else
    pip_quiet "$venv/bin/python" -m pip install -q --upgrade pip
  fi
  other=$([[ $flavour == cpu ]] && echo onnxruntime-gpu || echo onnxruntime)
  if "$venv/bin/python" -m pip show -q "$other" >/dev/null 2>&1; then
    log "replacing $other by the $flavour build of onnxruntime"
    "$venv/bin/python" -m pip uninstall -q -y onnxruntime onnxruntime-gpu >/dev/null
  fi
  pip_quiet "$venv/bin/python" -m pip install -q "${pip_opts[@]}" $editable "$SRC_DIR[$flavour${extras:+,$extras}]" \
    || die "pip could not install the project into $venv (see above)"
  "$venv/bin/python" -c 'import edge, onnxruntime, cv2, confluent_kafka' || die "the virtual environment at $venv is incomplete"
  if [[ $flavour == gpu ]]; then
    log "onnxruntime-gpu installed: TensorRT/CUDA are used when their libraries load, else the CPU"
  elif [[ $(uname -m) == aarch64 ]]; then
    log "Jetson/aarch64: CPU onnxruntime installed; for the GPU install JetPack's onnxruntime-gpu wheel (see --help)"
  else
    log "no NVIDIA driver found: CPU build of onnxruntime installed (--gpu forces onnxruntime-gpu)"
  fi
}

DEV_APT=(pkg-config libsystemd-dev gcc python3-dev python3-venv ffmpeg gpsd gpsd-clients)
RUN_APT=(pkg-config libsystemd-dev gcc python3-dev python3-venv gpsd)

# The unit names no group or device path: a group missing on the target fails it at start (216/GROUP) and a
# missing path makes PID 1 warn at every start. This drop-in names what exists here.
write_dropin() {
  local groups=() devices=()
  for group in video render dialout; do getent group "$group" >/dev/null && groups+=("$group"); done
  for dev in /dev/nvmap /dev/nvhost-ctrl /dev/nvhost-ctrl-gpu /dev/nvhost-gpu /dev/nvhost-as-gpu /dev/nvhost-prof-gpu; do
    [[ -e "$dev" ]] && devices+=("DeviceAllow=$dev rw")
  done
  $SUDO mkdir -p "$DROPIN_DIR"
  {
    echo "# Written by install.sh from what this machine has; install.sh rewrites it (site changes: another drop-in)."
    echo "[Service]"
    [[ ${#groups[@]} -gt 0 ]] && echo "SupplementaryGroups=${groups[*]}"
    [[ ${#devices[@]} -gt 0 ]] && printf '%s\n' "${devices[@]}"
    true
  } | $SUDO tee "$DROPIN" >/dev/null
  log "unit drop-in $DROPIN: groups ${groups[*]:-none}; Jetson device nodes ${#devices[@]}"
}

# The last line says whether the service runs; when it does not, the journal's last lines say why.
report_service() {
  local state result
  state=$(systemctl show -P ActiveState "$UNIT" 2>/dev/null || echo unknown)
  if [[ $state == active ]]; then
    log "edge-detector is running (active): journalctl -u edge-detector -f ; edge status"
    return 0
  fi
  result=$(systemctl show -P Result "$UNIT" 2>/dev/null || echo unknown)
  journalctl -u "$UNIT" -n 15 --no-pager -o cat >&2 2>/dev/null || true
  log "error: edge-detector is NOT running ($state, result $result): see the journal lines above, fix, then systemctl restart edge-detector"
  return 1
}

if [[ $MODE == dev ]]; then
  VENV="${VENV:-$SRC_DIR/.venv}"
  apt_install "${DEV_APT[@]}"
  # gpsd's own service is not wanted on a development machine: tests start gpsd through gpsfake
  make_venv "$VENV" dev "test,demo" "-e"
  log "development environment ready: $VENV"
  exit 0
fi

if [[ $MODE == uninstall ]]; then
  # the prefix the unit was installed with, when it was not the default
  if [[ -f "$UNIT_DIR/$UNIT" ]]; then
    installed=$(sed -n 's|^ExecStart=\(.*\)/venv/bin/edge .*|\1|p' "$UNIT_DIR/$UNIT")
    [[ -n "$installed" ]] && PREFIX="$installed"
  fi
  $SUDO systemctl disable --now "$UNIT" 2>/dev/null || true
  $SUDO rm -f "$UNIT_DIR/$UNIT" "$DROPIN"
  if [[ $PURGE -eq 1 ]]; then
    $SUDO rm -rf "$DROPIN_DIR"
  else
    $SUDO rmdir "$DROPIN_DIR" 2>/dev/null || true  # only if empty: a site's own drop-ins stay
  fi
  $SUDO systemctl daemon-reload 2>/dev/null || true
  $SUDO systemctl reset-failed "$UNIT" 2>/dev/null || true
  [[ -L "$BIN_LINK" && "$(readlink "$BIN_LINK")" == "$PREFIX"/* ]] && $SUDO rm -f "$BIN_LINK"
  $SUDO rm -rf "$PREFIX"
  if id "$SERVICE_USER" >/dev/null 2>&1; then $SUDO userdel "$SERVICE_USER"; fi
  if getent group "$SERVICE_USER" >/dev/null; then $SUDO groupdel "$SERVICE_USER"; fi
  if [[ $PURGE -eq 1 ]]; then
    $SUDO rm -rf "$STATE_DIR" "$CONF_DIR"
    log "removed everything: service, unit and drop-ins, $PREFIX, $BIN_LINK, user, $STATE_DIR, $CONF_DIR"
  else
    # the user is gone: leave no files owned by a uid that a future account could get
    [[ -d "$STATE_DIR" ]] && $SUDO chown -R root:root "$STATE_DIR"
    log "removed the service, unit, $PREFIX, $BIN_LINK and user; kept $STATE_DIR (undelivered events, models;" \
        "now owned by root) and $CONF_DIR (install.sh --uninstall --purge removes them)"
  fi
  exit 0
fi

command -v systemctl >/dev/null || die "systemctl not found: the service needs systemd"
apt_install "${RUN_APT[@]}"
if ! id "$SERVICE_USER" >/dev/null 2>&1; then
  $SUDO useradd --system --user-group --no-create-home --home-dir "$STATE_DIR" --shell /usr/sbin/nologin "$SERVICE_USER"
fi
for group in video render dialout; do
  if getent group "$group" >/dev/null; then $SUDO usermod -aG "$group" "$SERVICE_USER"; fi
done
$SUDO mkdir -p "$PREFIX" "$CONF_DIR" "$STATE_DIR/models"
make_venv "$PREFIX/venv" service "" ""
$SUDO install -m 0644 "$SRC_DIR/README.md" "$PREFIX/README.md"  # the unit's Documentation=
$SUDO mkdir -p "$(dirname "$BIN_LINK")"
$SUDO ln -sfn "$PREFIX/venv/bin/edge" "$BIN_LINK"

if [[ -n "$CONFIG" ]]; then
  [[ -f "$CONF_DIR/edge.toml" ]] && $SUDO cp -p "$CONF_DIR/edge.toml" "$CONF_DIR/edge.toml.bak"
  $SUDO install -m 0644 "$CONFIG" "$CONF_DIR/edge.toml"
elif [[ ! -f "$CONF_DIR/edge.toml" ]]; then
  $SUDO install -m 0644 "$SRC_DIR/config/edge.toml" "$CONF_DIR/edge.toml"
fi
if [[ ! -f "$CONF_DIR/credentials.env" ]]; then
  $SUDO install -m 0600 /dev/null "$CONF_DIR/credentials.env"
  echo "# KAFKA_SASL_PASSWORD=...   (root-only file, read by systemd)" | $SUDO tee "$CONF_DIR/credentials.env" >/dev/null
fi
# the same validation `edge run` applies: refuse to start a service that would exit at once
"$PREFIX/venv/bin/edge" config check "$CONF_DIR/edge.toml" >/dev/null \
  || die "$CONF_DIR/edge.toml is not valid (the lines above name each key); fix it and run install.sh again"

target="$STATE_DIR/models/yolov8n.onnx"
if [[ -n "$MODEL" ]]; then
  [[ -f "$MODEL" ]] || die "--model $MODEL: no such file"
  $SUDO install -m 0644 "$MODEL" "$target"
elif [[ ! -f "$target" ]]; then
  log "no --model given: exporting yolov8n with ultralytics (needs internet, a few minutes)"
  if "$PREFIX/venv/bin/python" -m pip install -q "ultralytics>=8.1" 2>/dev/null \
     && (cd "$STATE_DIR/models" && $SUDO "$PREFIX/venv/bin/edge" model export yolov8n.pt --out-dir "$STATE_DIR/models"); then
    :
  else
    log "warning: could not export a model; copy one to $target (edge model export on another machine) before starting"
  fi
fi
$SUDO chown -R "$SERVICE_USER:$SERVICE_USER" "$STATE_DIR"

sed -e "s|/opt/edge-detector|$PREFIX|g" "$SRC_DIR/systemd/$UNIT" | $SUDO tee "$UNIT_DIR/$UNIT" >/dev/null
write_dropin
$SUDO systemctl daemon-reload
if [[ $START -eq 0 ]]; then
  $SUDO systemctl enable "$UNIT" >/dev/null 2>&1
  log "installed and enabled, not started (--no-start): systemctl start edge-detector"
  exit 0
fi
$SUDO systemctl enable "$UNIT" >/dev/null 2>&1
# restart, not start: a re-install must run the new venv and unit. Type=notify: returns once READY=1 came
# (the model is loaded and warmed up) or the start failed.
$SUDO systemctl restart "$UNIT" || true
report_service || exit 1  # its own last line says why; not the ERR trap's
