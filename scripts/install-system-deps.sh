#!/usr/bin/env bash
# Installs the Debian packages the tests use, if they are missing:
#   spamassassin  scores our messages with its local rules
#   postfix       for smtp-sink/smtp-source (load tests, benchmark); never started
#   chromium      headless browser for the pages people use
#   postgresql-15 server binaries for the multi-worker tests (a throwaway cluster
#                 per test session; the packaged service is never started)
#   nginx         the reverse proxy the deploy/ config is for, run by a test on
#                 loopback in front of `newsletter serve`; the service is never started
#   dovecot-imapd the IMAP server `newsletter bounces --imap` is tested against, run by
#                 a test from a temp dir on loopback; the service is never started
#   libmail-dkim-perl  Perl's Mail::DKIM: an independent verifier of our DKIM signatures
#                 (tests/dkimverify.pl, the key lookup answered from a file)
#   dnsmasq-base  a small DNS server (the binary alone, no service) that the doctor's DNS
#                 tests start on loopback, serving good and broken SPF/DKIM/DMARC/MX records
# Idempotent; needs root (or sudo). Without them the tests that need them skip
# and say why.
set -euo pipefail

need=()
command -v spamassassin >/dev/null 2>&1 || need+=(spamassassin)
[ -x /usr/sbin/smtp-sink ] || need+=(postfix)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
[ -x /usr/sbin/nginx ] || need+=(nginx)
[ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/imap ] || need+=(dovecot-imapd)
[ -f /usr/share/perl5/Mail/DKIM/Verifier.pm ] || need+=(libmail-dkim-perl)
[ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo)
else
  echo "note: not root, so not installing ${need[*]}; the tests that need them will skip" >&2
  exit 0
fi

echo "installing system packages: ${need[*]}" >&2
# Postfix and nginx must be installed but not started: tell invoke-rc.d to start nothing.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
  "${sudo[@]}" chmod +x /usr/sbin/policy-rc.d
  trap '"${sudo[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | "${sudo[@]}" debconf-set-selections
if [ ! -f /var/lib/apt/lists/.newsletter-updated ] || [ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v -e lock -e partial -e auxfiles)" ]; then
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" touch /var/lib/apt/lists/.newsletter-updated
fi
"${sudo[@]}" apt-get install -y -q "${need[@]}"
