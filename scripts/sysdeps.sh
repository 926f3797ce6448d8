#!/usr/bin/env bash
# Install the system packages pip cannot provide (Debian/Ubuntu names).
#
#   bash scripts/sysdeps.sh         WeasyPrint's Pango/HarfBuzz libraries and fonts (Latin + CJK)
#   bash scripts/sysdeps.sh test    ... plus pdftotext, chromium (the HTML report tests) and, when the tests could find
#                                   neither a running server nor binaries to start one,
#                                   PostgreSQL and Redis (see tests/conftest.py)
#   bash scripts/sysdeps.sh venv    ... plus the venv module of $PYTHON (default python3)
#
# Missing packages are installed with apt-get when running as root or with passwordless
# sudo; otherwise the script exits 1 naming the packages to install. When everything is
# present it prints a single line.
set -euo pipefail

mode=${1:-}
case $mode in
  "" | test | venv) ;;
  *) echo "usage: bash scripts/sysdeps.sh [test|venv]" >&2; exit 2 ;;
esac

# -- checks ---------------------------------------------------------------------------------
has_pkg() {  # PACKAGE: installed according to dpkg
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == *" installed" ]]
}

has_lib() {  # SONAME: known to the dynamic linker
  local ldconfig
  ldconfig=$(command -v ldconfig || echo /sbin/ldconfig)
  "$ldconfig" -p 2>/dev/null | awk -v so="$1" '$1 == so { found = 1 } END { exit !found }'
}

has_font() {  # FAMILY: known to fontconfig
  command -v fc-list >/dev/null && [[ -n $(fc-list "$1" family 2>/dev/null) ]]
}

host_port() {  # URL DEFAULT_PORT: print "HOST PORT" of a scheme://[user[:pw]@]host[:port][/...] URL
  local rest=${1#*://} host port
  rest=${rest%%[/?]*}
  rest=${rest##*@}
  if [[ $rest == *:* && $rest != *']' ]]; then
    host=${rest%:*} port=${rest##*:}
  else
    host=$rest port=$2
  fi
  host=${host#[} host=${host%]}
  echo "${host:-127.0.0.1} ${port:-$2}"
}

tcp_open() {  # HOST PORT: something accepts TCP connections there
  # shellcheck disable=SC2016  # $1/$2 expand in the inner bash
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

pg_reachable() {  # a PostgreSQL server answers at $INVOICEKIT_TEST_PG_URL or 127.0.0.1:5432
  local url=${INVOICEKIT_TEST_PG_URL:-postgresql://127.0.0.1:5432/postgres}
  url="postgresql://${url#*://}"  # SQLAlchemy postgresql+driver:// -> libpq
  if command -v pg_isready >/dev/null; then
    pg_isready -q -t 3 -d "$url"
  else
    # shellcheck disable=SC2046  # host_port prints two words on purpose
    tcp_open $(host_port "$url" 5432)
  fi
}

has_initdb() {  # PostgreSQL server binaries the tests can start a throwaway cluster from
  command -v initdb >/dev/null || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

redis_answers() {  # a Redis server answers PING at $INVOICEKIT_TEST_REDIS_URL or 127.0.0.1:6379
  local url=${INVOICEKIT_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}
  if command -v redis-cli >/dev/null; then
    [[ $(timeout 3 redis-cli -u "$url" ping 2>/dev/null) == PONG ]]
  else
    # shellcheck disable=SC2046,SC2016  # two words on purpose; $1/$2 expand in the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "PING\r\n" >&3 && IFS= read -r line <&3 &&
      [[ $line == +PONG* ]]' _ $(host_port "$url" 6379) 2>/dev/null
  fi
}

python=${PYTHON:-python3}

venv_works() {  # $python can create a virtualenv with pip (Debian splits that into pythonX.Y-venv)
  local dir rc=0
  dir=$(mktemp -d)
  "$python" -m venv "$dir/venv" >/dev/null 2>&1 || rc=$?
  rm -rf "$dir"
  return "$rc"
}

missing=()
check() {  # fill $missing with the packages whose check fails
  missing=()
  has_lib libpango-1.0.so.0 || has_pkg libpango-1.0-0 || missing+=(libpango-1.0-0)
  has_lib libpangoft2-1.0.so.0 || has_pkg libpangoft2-1.0-0 || missing+=(libpangoft2-1.0-0)
  has_lib libharfbuzz-subset.so.0 || has_pkg libharfbuzz-subset0 || missing+=(libharfbuzz-subset0)
  # fonts the render templates name: DejaVu Sans (Latin, €, umlauts) and a small CJK-capable
  # one (WenQuanYi Micro Hei: ~5 MB installed, vs ~90 MB for Noto CJK)
  has_pkg fonts-dejavu-core || has_font "DejaVu Sans" || missing+=(fonts-dejavu-core)
  has_pkg fonts-wqy-microhei || has_font "WenQuanYi Micro Hei" || missing+=(fonts-wqy-microhei)
  if [[ $mode == test ]]; then
    command -v pdftotext >/dev/null || missing+=(poppler-utils)
    # the report tests render every HTML report in Debian's headless Chromium
    [[ -x /usr/bin/chromium ]] || command -v chromium >/dev/null || missing+=(chromium)
    has_initdb || pg_reachable || missing+=(postgresql)
    command -v redis-server >/dev/null || redis_answers || missing+=(redis-server)
  fi
  if [[ $mode == venv ]]; then
    venv_works || missing+=("python$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv")
  fi
}

# -- install --------------------------------------------------------------------------------
check
if ((${#missing[@]} == 0)); then
  echo "system dependencies: ok"
  exit 0
fi

sudo=() can_install=1
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    can_install=0
  fi
fi
command -v apt-get >/dev/null || can_install=0
if ((!can_install)); then
  echo "system dependencies: missing ${missing[*]}" >&2
  echo "install them (Debian/Ubuntu package names) with:" >&2
  echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "system dependencies: installing ${missing[*]}"
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
"${apt[@]}" update -qq
"${apt[@]}" install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}"

check
if ((${#missing[@]} > 0)); then
  echo "system dependencies: still missing after apt-get install: ${missing[*]}" >&2
  exit 1
fi
echo "system dependencies: ok"
