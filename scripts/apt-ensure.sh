# Sourced by the scripts that need Debian packages: apt_ensure PKG... installs those not installed
# yet (apt-get as root, sudo otherwise), or stops with one clear line when neither can.
apt_ensure() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  local as_root=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then as_root=(sudo); else
      echo "tenantdb: missing ${missing[*]}; run as root or with sudo, or install them: apt-get install -y ${missing[*]}" >&2
      return 1
    fi
  fi
  echo "tenantdb: installing ${missing[*]}" >&2
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# debian_mirror: the Debian mirror this machine's apt uses (mmdebstrap must be given one explicitly:
# left to itself it adds the -updates and -security suites, whose Release files may be expired).
debian_mirror() {
  local m
  m=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$m" ] || m=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -1)
  [ -n "$m" ] || { echo "tenantdb: no Debian mirror found in /etc/apt/sources.list.d/debian.sources or sources.list" >&2; return 1; }
  echo "$m"
}
