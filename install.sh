#!/usr/bin/env bash
# Install edge-detector on a vehicle computer (systemd service), or set up a development environment (--dev).
set -euo pipefail

PREFIX=/opt/edge-detector
STATE_DIR=/var/lib/edge-detector
CONF_DIR=/etc/edge-detector
UNIT_DIR=/etc/systemd/system
SERVICE_USER=edge-detector
MODEL=""
START=1
MODE=install
VENV=""
SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
  cat <<EOF
Usage: install.sh [OPTIONS]

Installs edge-detector as a systemd service: apt packages, a system user '$SERVICE_USER' (groups video, render,
dialout), a virtual environment under the prefix, the config in $CONF_DIR, the unit in $UNIT_DIR, a model in
$STATE_DIR/models, then 'systemctl enable --now edge-detector'. Safe to run again (idempotent).

Options:
  --prefix DIR     install under DIR (default $PREFIX)
  --model PATH     ONNX model to install (default: export yolov8n with ultralytics if available and online)
  --no-start       install and enable, but do not start the service
  --uninstall      stop and remove the service, the unit, the virtual environment and the user
                   (keeps $STATE_DIR: it holds the spool of events not yet delivered, and $CONF_DIR)
  --dev [VENV]     development set-up only: apt packages for tests, VENV (default ./.venv) with the
                   project installed editable plus test extras; no user, no service
  -h, --help       this help

GPU: on x86_64 with an NVIDIA driver (nvidia-smi works) onnxruntime-gpu is installed (CUDA, TensorRT when its
libraries are present); elsewhere the CPU onnxruntime. On Jetson install JetPack's onnxruntime-gpu wheel into
the virtual environment afterwards:  $PREFIX/venv/bin/pip install onnxruntime_gpu-<ver>-cp3X-linux_aarch64.whl
EOF
}

log() { printf 'install.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --prefix) PREFIX="${2:?--prefix needs a directory}"; shift 2 ;;
    --model) MODEL="${2:?--model needs a path}"; shift 2 ;;
    --no-start) START=0; shift ;;
    --uninstall) MODE=uninstall; shift ;;
    --dev) MODE=dev; if [[ $# -gt 1 && "$2" != -* ]]; then VENV="$2"; shift; fi; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

SUDO=""
if [[ $(id -u) -ne 0 ]]; then command -v sudo >/dev/null && SUDO=sudo || die "run as root (or install sudo)"; fi

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} with your package manager"
  log "installing apt packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

pick_python() {
  for py in python3.13 python3.12 python3.11 python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then echo "$py"; return; fi
  done
  die "Python 3.11 or newer is required"
}

make_venv() {  # $1 = venv dir, $2 = pip spec of the project
  local venv="$1" spec="$2" py
  py=$(pick_python)
  if [[ ! -x "$venv/bin/python" ]]; then
    "$py" -m venv "$venv" 2>/dev/null || { apt_install python3-venv; "$py" -m venv "$venv"; }
  fi
  "$venv/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  "$venv/bin/python" -m pip install -q $spec 2>&1 | grep -v '^WARNING: Location' || true
  "$venv/bin/python" -c 'import edge, onnxruntime, cv2, confluent_kafka' || die "the virtual environment at $venv is incomplete"
  if [[ $(uname -m) == x86_64 ]] && ! command -v nvidia-smi >/dev/null; then
    log "no NVIDIA driver found: the detector will run on the CPU (onnxruntime-gpu falls back to it)"
  elif [[ $(uname -m) == aarch64 ]]; then
    log "Jetson/aarch64: for the GPU, install JetPack's onnxruntime-gpu wheel into $venv (see --help)"
  fi
}

# The unit names no group or device path: a group missing on the target fails it at start (216/GROUP) and a
# missing path makes PID 1 warn at every start. This drop-in names what exists here.
write_dropin() {
  local groups=() devices=() dir="$UNIT_DIR/edge-detector.service.d"
  for group in video render dialout; do getent group "$group" >/dev/null && groups+=("$group"); done
  for dev in /dev/nvmap /dev/nvhost-ctrl /dev/nvhost-ctrl-gpu /dev/nvhost-gpu /dev/nvhost-as-gpu /dev/nvhost-prof-gpu; do
    [[ -e "$dev" ]] && devices+=("DeviceAllow=$dev rw")
  done
  $SUDO mkdir -p "$dir"
  {
    echo "# Written by install.sh from what this machine has; install.sh rewrites it (site changes: another drop-in)."
    echo "[Service]"
    [[ ${#groups[@]} -gt 0 ]] && echo "SupplementaryGroups=${groups[*]}"
    [[ ${#devices[@]} -gt 0 ]] && printf '%s\n' "${devices[@]}"
    true
  } | $SUDO tee "$dir/10-install.conf" >/dev/null
  log "unit drop-in: groups ${groups[*]:-none}; Jetson device nodes: ${#devices[@]}"
}

DEV_APT=(pkg-config libsystemd-dev gcc python3-dev ffmpeg gpsd gpsd-clients)
RUN_APT=(pkg-config libsystemd-dev gcc python3-dev gpsd)

if [[ $MODE == dev ]]; then
  VENV="${VENV:-$SRC_DIR/.venv}"
  apt_install "${DEV_APT[@]}"
  # gpsd's own service is not wanted on a development machine: tests start gpsd through gpsfake
  make_venv "$VENV" "-e $SRC_DIR[test,demo]"
  log "development environment ready: $VENV"
  exit 0
fi

if [[ $MODE == uninstall ]]; then
  $SUDO systemctl disable --now edge-detector.service 2>/dev/null || true
  $SUDO rm -f "$UNIT_DIR/edge-detector.service"
  $SUDO systemctl daemon-reload 2>/dev/null || true
  $SUDO rm -rf "$PREFIX"
  id "$SERVICE_USER" >/dev/null 2>&1 && $SUDO userdel "$SERVICE_USER" || true
  log "removed; kept $STATE_DIR (undelivered events) and $CONF_DIR"
  exit 0
fi

apt_install "${RUN_APT[@]}"
if ! id "$SERVICE_USER" >/dev/null 2>&1; then
  $SUDO useradd --system --no-create-home --home-dir "$STATE_DIR" --shell /usr/sbin/nologin "$SERVICE_USER"
fi
for group in video render dialout; do
  getent group "$group" >/dev/null && $SUDO usermod -aG "$group" "$SERVICE_USER"
done
$SUDO mkdir -p "$PREFIX" "$CONF_DIR" "$STATE_DIR/models"
make_venv "$PREFIX/venv" "$SRC_DIR"
[[ -f "$CONF_DIR/edge.toml" ]] || $SUDO install -m 0644 "$SRC_DIR/config/edge.toml" "$CONF_DIR/edge.toml"
if [[ ! -f "$CONF_DIR/credentials.env" ]]; then
  $SUDO install -m 0600 /dev/null "$CONF_DIR/credentials.env"
  echo "# KAFKA_SASL_PASSWORD=...   (root-only file, read by systemd)" | $SUDO tee "$CONF_DIR/credentials.env" >/dev/null
fi

target="$STATE_DIR/models/yolov8n.onnx"
if [[ -n "$MODEL" ]]; then
  [[ -f "$MODEL" ]] || die "--model $MODEL: no such file"
  $SUDO install -m 0644 "$MODEL" "$target"
elif [[ ! -f "$target" ]]; then
  log "no --model given: exporting yolov8n with ultralytics (needs internet, a few minutes)"
  "$PREFIX/venv/bin/python" -m pip install -q "ultralytics>=8.1" 2>/dev/null \
    && (cd "$STATE_DIR/models" && $SUDO "$PREFIX/venv/bin/edge" model export yolov8n.pt --out-dir "$STATE_DIR/models") \
    || log "warning: could not export a model; copy one to $target (edge model export on another machine) before starting"
fi
$SUDO chown -R "$SERVICE_USER:$SERVICE_USER" "$STATE_DIR"

sed -e "s|/opt/edge-detector|$PREFIX|g" "$SRC_DIR/systemd/edge-detector.service" | $SUDO tee "$UNIT_DIR/edge-detector.service" >/dev/null
write_dropin
$SUDO systemctl daemon-reload
if [[ $START -eq 1 ]]; then
  $SUDO systemctl enable --now edge-detector.service
  log "started: journalctl -u edge-detector -f ; $PREFIX/venv/bin/edge status"
else
  $SUDO systemctl enable edge-detector.service
  log "installed and enabled, not started (--no-start)"
fi
