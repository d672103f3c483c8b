# Shared helpers for ops/*.sh. Source it; it defines functions only.

# apt-get install the given Debian packages when any is missing (as root, or through sudo).
ensure_apt_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Prints the bin directory of the newest PostgreSQL server installed by Debian's packages.
postgres_bin_dir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

# Makes sure PostgreSQL server binaries exist (Debian's postgresql package).
ensure_postgres() {
  if [ -z "$(postgres_bin_dir)" ] || [ ! -x "$(postgres_bin_dir)/initdb" ]; then
    ensure_apt_packages postgresql
  fi
  # The Debian package starts a cluster of its own on 5432; we never use it, our clusters are private.
}

# The real SMTP server the provider tests talk to: aiosmtpd under Debian's python3
# (tests/OutboxComms.Tests/Infrastructure/smtp_server.py).
ensure_smtp_test_server() {
  ensure_apt_packages python3 python3-aiosmtpd
}

ensure_dotnet() {
  if ! command -v dotnet >/dev/null 2>&1; then
    echo "error: the .NET 10 SDK (dotnet) is not on PATH; install it first (see README, 'Requirements')." >&2
    exit 1
  fi
}
