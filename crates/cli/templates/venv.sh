# Installs requirements.txt into the virtualenv $1: made once and reused,
# reinstalled when requirements.txt changes.
need_venv() {
  local venv="$1"
  lock_toolchains
  # Its programs run as you: never a virtualenv (or a link to one) that
  # someone else could change.
  if [ -e "$venv" ] || [ -L "$venv" ]; then
    need_trusted_dir "$venv"
  fi
  if [ ! -x "$venv/bin/python" ] || ! cmp -s requirements.txt "$venv/.requirements.txt"; then
    if ! python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      echo "$0: needs python3 (3.10 or later) with venv and pip (Debian: apt-get install python3-venv)" >&2
      exit 1
    fi
    echo "$0: installing $(grep -v '^#' requirements.txt | tr '\n' ' ')into $venv" >&2
    rm -f "$venv/.requirements.txt"
    python3 -m venv "$venv"
    need_trusted_dir "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt >&2
    cp requirements.txt "$venv/.requirements.txt"
  fi
  unlock_toolchains
}
