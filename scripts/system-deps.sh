#!/bin/sh
# Installs the Debian packages that tests drive for real: chromium (dashboard
# tests), poppler-utils (pdftoppm, board pack pages), a Java runtime (Spark),
# Pango and a font for WeasyPrint.
# Runs only as root with apt-get; elsewhere it says what is missing and the
# tests that need a missing tool skip with that reason.
set -u
need=""
command -v chromium >/dev/null 2>&1 || need="$need chromium"
command -v pdftoppm >/dev/null 2>&1 || need="$need poppler-utils"
# PySpark 4 needs Java 17+: a missing or older java gets Debian's default runtime (17 on bookworm)
java_major() {
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\)\.\{0,1\}\([0-9]*\).*/\1 \2/p' | head -n 1 |
    { read -r major minor; [ "$major" = "1" ] && echo "${minor:-0}" || echo "${major:-0}"; }
}
if ! command -v java >/dev/null 2>&1; then
  need="$need default-jre-headless"
elif [ "$(java_major)" -lt 17 ] 2>/dev/null; then
  echo "java $(java_major) found; Spark needs Java 17+"
  need="$need default-jre-headless"
fi
# WeasyPrint (board pack PDF) loads Pango and needs at least one font
ldconfig -p 2>/dev/null | grep -q "libpango-1.0" || need="$need libpango-1.0-0 libpangoft2-1.0-0"
ldconfig -p 2>/dev/null | grep -q "libharfbuzz-subset" || need="$need libharfbuzz-subset0"
[ -d /usr/share/fonts/truetype/dejavu ] || need="$need fonts-dejavu-core"
[ -z "$need" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages:$need"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $need >/dev/null
else
  echo "missing (install them to run every test):$need"
fi
