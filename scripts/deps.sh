#!/usr/bin/env bash
# Installs the servers the tests talk to when they are missing: OpenSSH's sshd,
# PostgreSQL and Prometheus (the tests start their own throwaway servers;
# nothing is left running), Chromium for the web view's browser tests, and
# tmux, the terminal the progress display is tested in. Debian and Ubuntu;
# elsewhere it says what to install.
set -euo pipefail
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
# Debian's Chromium (and a font to draw text with), for the web view's
# headless-browser tests and `make screenshots`.
[ -x /usr/bin/chromium ] || need+=(chromium fonts-dejavu-core)
command -v tmux >/dev/null 2>&1 || need+=(tmux) # the terminal test draws progress in a real terminal
[ -x /usr/bin/prometheus ] || need+=(prometheus) # the check-gate tests start their own
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "the tests need: ${need[*]} — install them with your package manager" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "installing ${need[*]} for the tests"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
